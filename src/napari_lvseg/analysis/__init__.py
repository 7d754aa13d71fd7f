"""Clinical read-out of a label stack beyond per-slice figures: AHA 17 segments (`aha`), the bullseye plot
(`bullseye`), intensity-threshold reference methods (`thresholds`), masses in grams (`mass`) and the one-page
report (`report`). Qt-free; matplotlib is imported only by the plotting functions."""
