"""The ``ssl-mae`` command line: from a folder of images to an encoder in your framework.

::

    ssl-mae pretrain --output-dir runs/main                 # Fashion-MNIST, CPU-sized ViT
    ssl-mae pretrain --dataset folder --data-path photos/train --val-path photos/val \\
        --preset mae_vit_base_patch16 --output-dir runs/photos
    ssl-mae pretrain --resume runs/photos/last.ckpt         # every option from the checkpoint
    ssl-mae evaluate --checkpoint runs/main/last.ckpt --protocol linear --output linear.json
    ssl-mae export --checkpoint runs/main/last.ckpt --format hf --output export/hf
    ssl-mae embed --checkpoint runs/main/last.ckpt --input photos/ --output embeddings
    ssl-mae reconstruct --checkpoint runs/main/last.ckpt --images a.jpg b.png --output rec.png
    ssl-mae presets                                          # every preset and its defaults

One module per subcommand (:mod:`~ssl_mae.cli.pretrain`, :mod:`~ssl_mae.cli.evaluate`,
:mod:`~ssl_mae.cli.export`, :mod:`~ssl_mae.cli.embed`, :mod:`~ssl_mae.cli.reconstruct`,
:mod:`~ssl_mae.cli.presets`), each with ``add_parser`` and ``run``; the defaults derived from
the preset and the data live in :mod:`~ssl_mae.cli.defaults`. Building the parser imports only
light modules (no Lightning, timm or torchvision), so ``--help`` answers quickly.

Every failure ends with one line on stderr, ``ssl-mae: error: ...`` (exit status 2 for a
mistake in the input, 1 when a run fails) or ``ssl-mae: interrupted ...`` (130 after SIGINT,
143 after SIGTERM, once the logs are flushed and a resumable ``last.ckpt`` is written);
``--debug`` shows the traceback instead.
"""

from ssl_mae.cli.app import PROG, build_parser, main

__all__ = ["PROG", "build_parser", "main"]
