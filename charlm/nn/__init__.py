"""The numeric core: the recurrent cells and the model around them, the loss, the optimizers,
and the Kneser-Ney n-gram's counting and scoring. numpy only; nothing here reads files,
prints or knows about checkpoints.
"""
