"""Every tooltip of the dock widgets, in one place (so wording stays consistent and reviewable)."""

# -- shared
IMAGE_LAYER = "Grey-level image layer to work on: a slice (Y, X) or a stack (Z, Y, X). RGB images are refused."
LABELS_LAYER = "Labels layer holding the classes 0 background, 1 LV cavity, 2 myocardium, 3 infarct, 4 no-reflow."
MODEL = ("Model from the registry (bundled models, then your own trained ones); it starts on the task's default "
         "model.")
REFRESH_MODELS = "Re-read the model registry (after copying a model folder in by hand)."

# -- Segment LV
TTA = "Test-time augmentation: average the prediction over the 4 rotations (4x slower, steadier)."
SHADING = ("Where the heart (or, in a whole field of view, the tissue around it) is brighter on one side, as an "
           "uncorrected receive coil leaves it, divide that out and read the image again (as `lvseg segment` does; "
           "off: --no-shading-correction).")
UNCERTAINTY = ("Also add a per-pixel uncertainty map (normalised entropy, 0 = sure, 1 = unsure) over the part of "
               "the image the model looked at.")
CENTER = ("Where the LV is, for images larger than the model grid: 'automatic' finds it, or pick a Points "
          "layer and its last point is used as the LV centre.")
RUN_SEGMENT = ("Segment the chosen image in the background; the result replaces the last prediction, '<image> labels' "
               "(Ctrl+Z brings it back). Labels opened from a file are never overwritten: the result then goes "
               "beside them as '<image> prediction'. Press again to stop.")
CLASS_BUTTON = "Paint with class {value} ({name}); keyboard shortcut {value} on the labels layer."
CLASS_VISIBLE = "Show or hide the {name} class in the labels layer (the data is kept)."
QUANT_TABLE = ("Per slice and total: myocardium pixels, infarct and no-reflow % of the myocardium, and "
               "maximum transmurality; updated after every edit. Where the image has a voxel size (its scale), "
               "also the myocardium in mm² per slice, and in total its volume (mm³), its mass (g, at 1.05 g/ml) "
               "and the infarct and no-reflow volumes (mm³; infarct includes no-reflow); a single slice gets its "
               "area only. 'myo' is the myocardium (normal + infarct + no-reflow); the exported CSV names the "
               "columns in full.")
EXPORT_CSV = "Save the quantification table as a CSV file."

# -- Correct and save
ANNOTATION_FOLDER = "Pair folder where corrected (image, labels) pairs are saved (images/, masks/, manifest.jsonl)."
CHOOSE_FOLDER = "Choose a folder."
SAVE = "Save the image and its corrected labels to the annotation folder now (replaces the earlier save of this case)."
AUTOSAVE = "Save automatically a few seconds after the last edit, so a crash loses nothing."
LOAD_SAVED = ("This image already has a saved correction: load it into its prediction layer, or beside labels "
              "opened from a file as '<image> correction'.")
CASES_FOLDER = "Folder of cases to correct (EMIDEC case folders or NIfTI/TIFF images)."
NEXT_CASE = ("Open the next case, least certain prediction first (ranked once by mean uncertainty). "
             "While it ranks, the button stops the ranking.")

# -- Synthesize
NEW_MASK = "Draw a new LV (cavity disc + myocardium ring) in a new Labels layer, at the centre and size given."
RING_CENTER = "LV centre (y, x) in pixels; empty fields use the middle of the image."
RING_RADIUS = "Cavity radius in pixels."
RING_THICKNESS = "Myocardial wall thickness in pixels."
RING_SHAPE = "Size of the new square slice, in pixels."
SIM_ACTION = ("Edit the mask: grow/shrink the infarct, add/remove no-reflow, or a random plausible variant "
              "(of a whole stack: one warp for all slices, one lesion through neighbouring slices).")
SIM_PIXELS = "How many pixels to grow or shrink the infarct by."
SIM_SCOPE = "Apply the edit to the current slice only or to every slice of the stack."
APPLY_SIM = "Apply the mask edit (can be undone with the layer's undo, Ctrl+Z)."
SYNTH_MODEL = "Pix2Pix mask-to-image model; it starts on the default generator."
SYNTH_GRAIN = ("With a context generator: give the generated LV region the image's own noise texture, measured over "
               "the pixels it replaces (its spread and spectrum only; redrawing only what changed, those pixels' "
               "own fine texture); off, the region stays as smooth as the generator draws it (as `lvseg synthesize "
               "--no-grain`).")
SYNTH_REDRAW = ("With a context image and its own labels: redraw only the pixels your edit changed (and 3 pixels "
                "around them, where the new pixels blend into the real ones), so the rest of that heart stays the "
                "real one; or redraw the whole LV region. An unedited mask, or one without the image's labels, "
                "redraws the whole LV (as `lvseg synthesize --fill`).")
N_VARIANTS = "How many images to generate (each with its own noise seed)."
SEED = "Random seed: the same seed and mask give the same result."
RUN_SYNTH = "Generate synthetic LGE image(s) from the mask in the background; press again to stop."
SYNTH_FOLDER = "Pair folder receiving the synthetic (image, mask) pairs."
ADD_SYNTH = "Write every synthetic image of this mask, with the mask, to the synthetic pair folder."

# -- Train (its option fields' tooltips are the options' own: engine/options.py)
ADD_SOURCE = "Add a data folder (EMIDEC cases, annotation folder or synthetic pair folder)."
REMOVE_SOURCE = "Remove the selected data source."
START = "Start training in the background."
PAUSE = "Stop at the next step, keeping a checkpoint; Resume continues from it."
RESUME = ("Continue the paused run from its last checkpoint; or the run in the run folder field (an earlier session's "
          "or a failed one), with its saved settings.")
CANCEL = "Stop at the next step; the checkpoint is kept but the run is not resumed from this panel."
PLOT = {"segmentation": "Training loss (per step) and validation Dice per class (per epoch).",
        "synthesis": "Training loss (per step) and validation SSIM of the generated images (per epoch)."}

# -- Segment LV: AHA segments
AHA_SECTION = ("AHA 17-segment analysis of the labels: slice levels, the RV insertion point (a Points layer you can "
               "drag), the bullseye, threshold reference methods and the one-page report. Computed only while open, "
               "and again after each edit.")
AHA_LABELS = ("Labels layer to analyse: the last segmentation, or any labels layer (e.g. corrected or opened from a "
              "file). Its image is the one it was segmented from, else the image picked above, else one of its shape.")
AHA_LEVELS = ("Level of each slice in stack order (slice 0 first): b basal, m mid, a apical, x apex cap (no cavity), "
              "- not analysed. Edit and press Enter; 'auto' splits the slices with myocardium into thirds, the apex "
              "at the narrower end.")
AHA_LEVELS_AUTO = "Go back to the automatic levels (thirds of the slices with myocardium)."
AHA_INSERTION = ("Anterior RV insertion, the origin of the segments: an angle on screen (0° right, 90° up), "
                 "estimated from the RV blood pool next to the septum. Drag a point of the '<labels> RV insertion' "
                 "layer to move it: that point's angle from its slice's LV centre is used for every slice.")
AHA_ESTIMATE = "Estimate the RV insertion from the image again (forgets where you moved the point)."
AHA_VALUE = ("Colour the bullseye by the infarct % of each segment's myocardium, or by the transmurality class "
             "(mean extent across the wall: 0, 1-25, 26-50, 51-75, 76-100 %). Hatched, NR: no-reflow in the segment.")
AHA_BULLSEYE = ("The 17 AHA segments as seen from the apex: basal outer ring, apex centre; anterior up, septum left. "
                "Updates after every edit of the labels.")
AHA_METHODS = ("Infarct % of the myocardium by the labels and by intensity-threshold methods inside the same "
               "myocardium: n-SD (above remote mean + n SD, per slice) and FWHM (above half the infarct's maximum, "
               "from the image's floor). Labelled no-reflow counts as infarct in all, as the labels' infarct does.")
AHA_METHOD = "Threshold method to show as a labels layer."
AHA_REMOTE = ("Remote (healthy) myocardium for the n-SD methods: the labels' normal myocardium (2), or the non-zero "
              "pixels of a labels layer you drew.")
AHA_SHOW_METHOD = ("Add the method's infarct (3, inside the myocardium) as a labels layer '<labels> <method>', to "
                   "compare with the network's; pressed again, it is updated.")
AHA_EXPORT = "Save the bullseye as shown as a PNG image."
AHA_REPORT = ("Write the one-page report (PDF or PNG, with a CSV beside it): masses, infarct and no-reflow %, the "
              "per-segment table, the bullseye, threshold methods and a strip of the slices with the labels.")
