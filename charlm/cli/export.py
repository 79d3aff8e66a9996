"""`charlm export` and `charlm import`: a recurrent model as a safetensors file and back
(charlm.io.exchange), for PyTorch users and from them."""

from pathlib import Path

import typer

from charlm.cli import options as o
from charlm.cli.app import app


@app.command()
def export(
    checkpoint: Path = typer.Argument(..., help="A .npz checkpoint of a recurrent model."),
    format: o.ExportFormat = typer.Option(o.ExportFormat.safetensors, "--format", help="The file format."),
    out: Path = typer.Option(..., help="The file to write."),
    force: bool = typer.Option(False, help="Replace OUT if it exists."),
):
    """Write a model's weights under their PyTorch names, its vocabulary and config alongside."""
    from charlm.io import exchange
    _refuse_overwrite(out, force)
    loaded = exchange.export(checkpoint, out)
    params = sum(int(v.size) for k, v in loaded.arrays.items() if k.startswith("params/"))
    print(f"wrote {out}: {_describe(loaded)}, {params:,} parameters, "
          f"vocabulary of {loaded.vocab.size:,} characters")


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help="A .safetensors file: from charlm export, or saved from PyTorch modules."),
    out: Path = typer.Option(..., help="The checkpoint to write (.npz, the weights only)."),
    vocab: Path | None = typer.Option(None, help="Without charlm metadata: a UTF-8 text file holding the model's characters in id order."),
    activation: o.Activation | None = typer.Option(None, help="Without charlm metadata: the RNN's nonlinearity.", show_default="tanh"),
    div_value: float | None = typer.Option(None, "--div-value", callback=o.positive, help="Without charlm metadata: the adaptive softmax's div_value.", show_default="4.0"),
    force: bool = typer.Option(False, help="Replace OUT if it exists."),
):
    """Turn a safetensors file into a charlm checkpoint that sample, eval and info read."""
    from charlm.io import exchange
    _refuse_overwrite(out, force)
    vocab_text = None
    if vocab is not None:
        from charlm.data import text
        vocab_text = text.read_text_file(vocab)
    loaded = exchange.import_file(file, out, vocab_text,
                                  activation.value if activation else None, div_value)
    print(f"wrote {out}: {_describe(loaded)}, vocabulary of {loaded.vocab.size:,} characters")


def _refuse_overwrite(out, force):
    from charlm.errors import UsageError
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; give a file name")
    if out.exists() and not force:
        raise UsageError(f"{out} already exists; pass --force to replace it")


def _describe(loaded):
    from charlm.io import checkpoint
    return checkpoint.model_config_from(loaded.config, loaded.format_version).describe()
