"""Compatibility only: the model store is now `card` (the card schema and its validation), `weights` (saving and
safe loading, shards) and `registry` (names, the user's model folder, registering). Nothing in the package imports
this module (tests/test_layering.py checks it); scripts written against ``models.store`` keep working.
"""

from napari_lvseg.models.card import (  # noqa: F401
    CARD_FILE,
    TASKS,
    WEIGHTS_FILE,
    ModelCard,
    card_path,
    read_card,
)
from napari_lvseg.models.registry import (  # noqa: F401
    USER_DIR_ENV,
    ModelEntry,
    bundled_models_dir,
    check_free_model_name,
    check_model_name,
    default_model_name,
    free_model_name,
    list_models,
    load_model,
    model_card_only,
    recover_registrations,
    register_model,
    registered_copy,
    resolve,
    scan_models,
    user_models_dir,
)
from napari_lvseg.models.weights import (  # noqa: F401
    ARCHITECTURES,
    SHARD_BYTES,
    build_model,
    save_model,
    torch_load_plain,
    weight_files,
    weights_problem,
)
