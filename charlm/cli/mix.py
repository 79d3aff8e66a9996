"""`charlm mix`: several checkpoints of any kinds in one self-contained mixture checkpoint."""

from pathlib import Path

import typer

from charlm.cli import options as o
from charlm.cli.app import app
from charlm.names import MIX_FORGETTING


@app.command()
def mix(
    checkpoints: list[Path] = typer.Argument(..., help="Two or more .npz checkpoints (the first one's character ids are the mixture's)."),
    out: Path = typer.Option(..., help="The mixture checkpoint to write."),
    mix_weights: str | None = typer.Option(None, "--mix-weights", callback=o.mix_weights, help="Fixed weights w1,w2,..., one per checkpoint; default: online."),
    forgetting: float = typer.Option(MIX_FORGETTING, callback=o.non_negative, help="With online weights: how fast old evidence fades (0 = the exact posterior)."),
    force: bool = typer.Option(False, help="Replace --out if it exists."),
):
    """Write a mixture of CHECKPOINTS that sample, eval perplexity and info accept."""
    from charlm import lm
    from charlm.errors import UsageError
    from charlm.io import checkpoint
    from charlm.lm.mixture import MixtureLM
    from charlm.names import MIXTURE
    if out.exists() and not force:
        raise UsageError(f"{out} exists; pass --force to replace it")
    if any(out.resolve() == p.resolve() for p in checkpoints):
        raise UsageError(f"--out {out} is one of the checkpoints to mix; write elsewhere")
    loaded = [checkpoint.load(p) for p in checkpoints]
    for part in loaded:
        if part.kind == MIXTURE:
            raise UsageError(f"{part.path} is a mixture; mix the models it holds instead")
    mixture = MixtureLM([lm.from_checkpoint(part) for part in loaded], mix_weights, forgetting)
    weights = None if mixture.weights is None else [float(w) for w in mixture.weights]
    checkpoint.save_mixture(out, loaded, weights, mixture.forgetting)
    print(f"wrote {out}: {mixture.describe()}")
