"""The mixture checkpoint's schema: several models' checkpoints inside one file.

Key layout (charlm.io.checkpoint's, per model i = 0..K-1 under a prefix):
    mix/<i>/<member>      every member of model i's own checkpoint (params/* or ngram/*, and
                          mix/<i>/meta/vocab), neural models as weights only
    meta/vocab            int32 (V,) the mixture's ids: model 0's vocabulary
    meta/config           its model section: {"cell": "mixture", "vocab_size",
                          "components": [{"config": model i's whole config,
                                          "format_version": model i's format}, ...],
                          "weights": null (online) or K numbers, "forgetting": f}
    meta/format_version   4 (MIXTURE_VERSION): a charlm that predates mixtures refuses the file
Each model's config is checked by the schema of its own kind, exactly as if it were its own
file; a mixture inside a mixture is refused.
"""

import math

from charlm.errors import CheckpointError
from charlm.io.progress import check_field
from charlm.names import MIXTURE

MIXTURE_VERSION = 4
MAX_MODELS = 16
MAX_FORGETTING = 0.1


def prefix(i):
    """The member prefix of model i."""
    return f"mix/{i}/"


def schema(config, version, model_schema, max_vocab):
    """Every member of a mixture file; model_schema(config, version) gives one model's."""
    if version < MIXTURE_VERSION:
        raise CheckpointError(f"config field 'cell' 'mixture' needs format {MIXTURE_VERSION}, "
                              f"not {version}")
    m = config["model"]
    vocab_size = check_field(m, "vocab_size", int, 2, max_vocab)
    components = m.get("components")
    if not isinstance(components, list) or not 2 <= len(components) <= MAX_MODELS:
        raise CheckpointError(f"config field 'components' must list 2 to {MAX_MODELS} models")
    members = {"meta/vocab": ("<i4", (vocab_size,))}
    for i, entry in enumerate(components):
        if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
            raise CheckpointError(f"config field 'components' entry {i} is invalid")
        model_version = check_field(entry, "format_version", int, 1, MIXTURE_VERSION)
        model = entry["config"].get("model")
        if isinstance(model, dict) and model.get("cell") == MIXTURE:
            raise CheckpointError("a mixture holds a mixture; mix the models themselves")
        members |= {prefix(i) + key: spec
                    for key, spec in model_schema(entry["config"], model_version).items()}
    check_settings(m, len(components))
    return members


def check_settings(m, count):
    """The weights (None: online) and the forgetting rate of a mixture's model section."""
    weights = m.get("weights", None)
    if weights is not None:
        if not isinstance(weights, list) or len(weights) != count or not all(
                _number(w) and w >= 0 for w in weights) or sum(weights) <= 0:
            raise CheckpointError("config field 'weights' has an invalid value")
    forgetting = check_field(m, "forgetting", (int, float), 0.0, MAX_FORGETTING)
    if not math.isfinite(forgetting):
        raise CheckpointError("config field 'forgetting' has an invalid value")
    return weights, float(forgetting)


def _number(value):
    return isinstance(value, int | float) and not isinstance(value, bool) and \
        math.isfinite(value)
