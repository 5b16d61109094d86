"""Run a tiny training in this process and save its final parameters: a subprocess helper for
tests that need another device count (XLA_FLAGS) or another process.

    python tests/train_helper.py WORKDIR OUT.npz [epochs [spectrum [input_dropout]]]
"""

import dataclasses
import json
import sys

import jax
import numpy as np

from drumlayer.model import vae
from drumlayer.training import checkpoints, loop, options
from drumlayer.training import distributed as distributed_lib
from drumlayer.workdir import Workdir


def tiny_data(seed: int = 0) -> loop.Data:
    rng = np.random.default_rng(seed)
    k, s = 6, 22050
    t = np.arange(s) / s
    sources = np.stack([np.sin(2 * np.pi * (100 + 150 * i) * t) * np.exp(-t / (0.05 + 0.02 * i))
                        for i in range(k)]).astype(np.float32)
    from drumlayer.features import extractor

    src_f = np.asarray(extractor.features(sources))
    w = rng.dirichlet(np.ones(k), 30).astype(np.float32)
    targets = np.asarray(extractor.features(w @ sources))
    mean, std = loop.standardisation(targets)
    # 5 validation rows, fewer than tiny_config's batch of 8: evaluated as one block of 5 on one
    # device and of 8 (3 padded) on 8 devices
    return loop.Data(sources=sources, source_features=src_f, train=targets[:22],
                      val=targets[22:27], mean=mean, std=std)


def tiny_config(epochs: int = 2) -> options.TrainConfig:
    """Checkpoints after every epoch (checkpoint_every_s=0), which the fault tests need."""
    return options.TrainConfig(batch=8, learning_rate=1e-3, pretrain_epochs=1, epochs=epochs,
                             checkpoint_every_s=0,
                             model=vae.ModelConfig(latent=4, encoder_hidden=32,
                                                     decoder_hidden=8))


if __name__ == "__main__":
    from drumlayer import cli

    cli.compilation_cache()  # as the commands do: a rerun of the tests compiles little
    distributed = distributed_lib.initialize_distributed()
    wd, out = Workdir(sys.argv[1]), sys.argv[2]
    epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    data, tc = tiny_data(), tiny_config(epochs)
    if len(sys.argv) > 4:  # train.spectrum
        tc = dataclasses.replace(tc, loss=dataclasses.replace(
            tc.loss, spectrum=sys.argv[4],
            input_dropout=float(sys.argv[5]) if len(sys.argv) > 5 else 0.0))
    summary = loop.train_and_evaluate(data, tc, wd, progress=False)
    params = checkpoints.load_params(wd, vae.create(len(data.sources), tc.model),
                               data.train.shape[1], which="latest", tc=tc)
    flat = {"/".join(str(p) for p in path): np.asarray(v)
            for path, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    steps = [json.loads(line) for line in open(wd.metrics)]
    steps = [r for r in steps if r["kind"] == "step"]
    # per step, before clipping: a gradient scaled by a constant (pmean for psum) shows here,
    # while clipping and Adam would hide it in the parameters
    np.savez(out, devices=jax.device_count(), val_loss=summary["val_loss"],
             resumed_from=summary["resumed_from"], resumed_batches=summary["resumed_batches"],
             step_loss=[r["loss"] for r in steps], step_grad_norm=[r["grad_norm"] for r in steps],
             **flat)
    if distributed:
        jax.distributed.shutdown()
