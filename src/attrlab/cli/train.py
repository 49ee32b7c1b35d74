"""``attrlab train``: train a zoo model on a data set with a paper's recipe."""

from __future__ import annotations

import argparse
import inspect
import shlex
from dataclasses import replace

import torch

from .. import models
from ..core.options import parse_kv
from ..data import TEXT_DATASETS, dataset_info, load_dataset
from ..experiments.train import PRESETS, fit, fit_text
from .common import UserError, device_arg, positive_int_arg


def cmd_train(args: argparse.Namespace) -> int:

    if args.preset not in PRESETS:
        raise UserError(f"unknown preset {args.preset!r}; available: {', '.join(PRESETS)}")
    if args.model not in models.BUILDERS:
        raise UserError(f"unknown model {args.model!r}; available: {', '.join(models.BUILDERS)}")
    recipe = PRESETS[args.preset]
    if args.epochs:
        recipe = recipe.with_epochs(args.epochs)
    if args.batch_size:
        recipe = replace(recipe, batch_size=args.batch_size)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dataset in TEXT_DATASETS:
        return _train_text(args, recipe)
    info = dataset_info(args.dataset)
    kwargs = {"num_classes": info.num_classes, "in_channels": info.in_channels,
              **parse_kv(args.model_arg, "--model-arg")}
    if "input_size" in inspect.signature(models.BUILDERS[args.model]).parameters:
        kwargs.setdefault("input_size", info.input_size)
    torch.manual_seed(args.seed)
    model = models.BUILDERS[args.model](**kwargs)
    train, test = (load_dataset(args.dataset, s, args.data_dir) for s in ("train", "test"))
    meta = fit(model, train, test, recipe, args.out, seed=args.seed, half=args.half,
               progress=not args.no_progress,
               meta={"command": "attrlab " + shlex.join(args.argv)},
               channels_last=args.channels_last, bf16=args.bf16, device=args.device)
    print(f"wrote {args.out}: test accuracy {meta['test_accuracy']:.4f}")
    return 0


def _train_text(args: argparse.Namespace, recipe) -> int:
    """A token classifier (``lstm_classifier``) on a text data set: the vocabulary (tokens
    seen at least twice in the training split) sizes the embedding."""
    splits = TEXT_DATASETS[args.dataset](args.data_dir, min_freq=2)
    kwargs = {"vocab_size": len(splits["train"].vocab), "num_classes": 2,
              **parse_kv(args.model_arg, "--model-arg")}
    torch.manual_seed(args.seed)
    try:
        model = models.BUILDERS[args.model](**kwargs)
    except TypeError as err:
        raise UserError(f"model {args.model!r} does not take token inputs: {err}") from None
    meta = fit_text(model, splits["train"], splits["test"], recipe, args.out, seed=args.seed,
                    half=args.half, progress=not args.no_progress,
                    meta={"command": "attrlab " + shlex.join(args.argv), "vocab_min_freq": 2},
                    dev=splits["dev"])
    print(f"wrote {args.out}: dev accuracy {meta['dev_accuracy']:.4f}, test accuracy "
          f"{meta['test_accuracy']:.4f}")
    return 0


def add_train_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    t = sub.add_parser("train", help="train a zoo model on a data set with a paper's recipe",
                       description="Train a zoo model (attrlab.models) on a registered data "
                       "set with a paper's recipe (--preset), deterministically from --seed; "
                       "writes a checkpoint with weights and metadata (architecture, data set, "
                       "normalisation, test accuracy, the command) and resumes from "
                       "OUT.partial after an interruption.")
    t.add_argument("--model", required=True, help="zoo builder: nib_vgg, resnet8, cnn6c3l, "
                   "mnist_cnn, nib_cnn, lstm_classifier")
    t.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                   help="builder argument, repeatable (e.g. depth=16, width=0.25)")
    t.add_argument("--dataset", required=True, help="digits, mnist, cifar10 or sst2 (token "
                   "classifiers: --model lstm_classifier --preset sst2)")
    t.add_argument("--preset", default="paper01", help="recipe: paper01, resnet, mnist, digits, "
                   "sst2")
    t.add_argument("--epochs", type=positive_int_arg,
                   help="override the preset's epochs (milestones scale)")
    t.add_argument("--batch-size", type=positive_int_arg, help="override the preset's batch size")
    t.add_argument("--seed", type=int, default=0, help="seed of the initialisation, data "
                   "order and augmentation (default 0)")
    t.add_argument("--out", required=True, help="checkpoint file to write (resumes from "
                   "OUT.partial if present)")
    t.add_argument("--half", action="store_true", help="store weights as float16")
    t.add_argument("--threads", type=positive_int_arg, help="torch CPU threads")
    t.add_argument("--channels-last", action="store_true", help="channels-last memory format "
                   "(faster convolutions on CPU)")
    t.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the training "
                   "forward pass (weights stay float32)")
    t.add_argument("--device", default="cpu", type=device_arg, help="torch device to train on (cpu, cuda, ...)")
    t.add_argument("--data-dir", help="where real data lives (default $ATTRLAB_DATA_DIR)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)
    return t
