"""Saving a mixture checkpoint and reading its models back out (charlm.io.mixture is its
schema; charlm.io.checkpoint the schema and loader of every kind)."""

from charlm import names
from charlm.data.vocab import Vocab
from charlm.errors import CheckpointError
from charlm.io import mixture
from charlm.io.checkpoint import MIXTURE_VERSION, Loaded, _save, format_version


def save_mixture(path, models, weights, forgetting):
    """A self-contained mixture of the Loaded checkpoints models (not mixtures), the first
    one's vocabulary its ids; a recurrent model goes in as its weights alone (and its
    gradient RMS, adapt/rms, if its config has "adapt_rms")."""
    arrays, entries = {}, []
    for i, loaded in enumerate(models):
        config, members, version = loaded.config, loaded.arrays, loaded.format_version
        if loaded.kind == "neural":
            members = {k: v for k, v in members.items() if not k.startswith(("optim/", "state/"))}
            config = config | {"weights_only": True}
            version = format_version(config["model"], True, "adapt_rms" in config)
        entries.append({"config": config, "format_version": version})
        arrays |= {mixture.prefix(i) + key: value for key, value in members.items()}
    first = models[0].config
    sections = {"model": {"cell": names.MIXTURE, "vocab_size": models[0].vocab.size,
                          "components": entries, "weights": weights, "forgetting": forgetting},
                "train": first.get("train"), "data": first.get("data")}
    _save(path, arrays, models[0].vocab, sections, MIXTURE_VERSION)


def mixture_parts(loaded):
    """The Loaded checkpoint of each model in a loaded mixture, and (weights, forgetting)."""
    parts = []
    m = loaded.config["model"]
    for i, entry in enumerate(m["components"]):
        p = mixture.prefix(i)
        arrays = {k[len(p):]: v for k, v in loaded.arrays.items() if k.startswith(p)}
        try:
            vocab = Vocab.from_array(arrays["meta/vocab"])
        except ValueError as exc:
            raise CheckpointError(f"{loaded.path}: model {i} has an invalid vocabulary "
                                  f"({exc})") from None
        parts.append(Loaded(loaded.path, entry["config"], arrays, vocab,
                            entry["format_version"]))
    if parts[0].vocab != loaded.vocab:
        raise CheckpointError(f"{loaded.path}: the mixture's vocabulary is not its first "
                              "model's")
    return parts, mixture.check_settings(m, len(parts))
