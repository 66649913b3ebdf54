"""The CNN decoder's memory format: channels-last (NHWC, varinf's) against NCHW, in evaluation and in training.

``varinf.models.vae.ConvDecoder`` runs its transposed convolutions on channels-last activations with
in-place ReLUs. This times, in one run and in turn (median of ``--rounds``), the decoder of
configs/vae2d_cnn_mnist.toml (untrained weights: the time does not depend on them)

  - eval:  one decoder pass on ``--rows`` latent vectors (the evaluation's chunk: 12 samples × 100 points)
  - train: one VAE step (encoder, decoder, Bernoulli ELBO, backward) on a batch of 100 images

with the model's own forward (channels-last) and with the same modules fed NCHW tensors and
out-of-place ReLUs (the layout before the change), and checks that both give the same logits.

    python benchmarks/bench_cnn.py --threads 1
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time

import torch

from varinf.models import VAE, VAEConfig


def nchw_decode(decoder, z: torch.Tensor) -> torch.Tensor:
    """The decoder's forward on NCHW tensors with out-of-place activations (the layout before channels-last)."""
    h = decoder.head(z).reshape(-1, *decoder.start)
    for layer in decoder.deconv:
        h = torch.relu(h) if isinstance(layer, torch.nn.ReLU) else layer(h)
    return h.reshape(z.shape[0], -1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1200)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = VAE(VAEConfig(data_dim=784, latent_dim=2, hidden=(16,), architecture="cnn", channels=(32, 64),
                          activation="relu", image_shape=(28, 28)))
    z = torch.randn(args.rows, 2)
    x = (torch.rand(100, 784) < 0.3).float()
    with torch.no_grad():
        gap = (model.decoder(z) - nchw_decode(model.decoder, z)).abs().max().item()

    def step(decode):
        model.zero_grad()
        mu, log_std = model.encode(x)
        h = mu + log_std.exp() * torch.randn_like(mu)
        logits = decode(h)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        loss.backward()

    cases = {
        ("eval", "channels-last"): lambda: model.decoder(z),
        ("eval", "NCHW"): lambda: nchw_decode(model.decoder, z),
        ("train", "channels-last"): lambda: step(model.decoder),
        ("train", "NCHW"): lambda: step(lambda h: nchw_decode(model.decoder, h)),
    }
    times = {key: [] for key in cases}
    for key, fn in cases.items():                                   # warm-up
        with torch.inference_mode(key[0] == "eval"):
            fn()
    for _ in range(args.rounds):
        for key, fn in cases.items():
            with torch.inference_mode(key[0] == "eval"):
                t0 = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - t0)
    print(f"date {datetime.date.today()}  {platform.processor() or platform.machine()}  torch {torch.__version__}  "
          f"threads {torch.get_num_threads()}  eval rows {args.rows}  train batch 100  rounds {args.rounds}")
    print(f"max |Δ logits| channels-last vs NCHW: {gap:.1e}")
    print()
    print("| work | NCHW s | channels-last s | speed-up |")
    print("|---|---|---|---|")
    for work in ("eval", "train"):
        old, new = statistics.median(times[(work, "NCHW")]), statistics.median(times[(work, "channels-last")])
        print(f"| {work} | {old:.4f} | {new:.4f} | {old / new:.2f}× |")


if __name__ == "__main__":
    main()
