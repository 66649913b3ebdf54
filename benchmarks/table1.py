"""Run one row of seed 003's Table 1 (continuous latents): train from its config, then evaluate.

    python benchmarks/table1.py --row gbvi-reduced            # -> runs/table1-gbvi-reduced/eval.json
    python benchmarks/table1.py --row vae --nll-samples 5000

Rows and configs:
    vae            configs/table1_vae.toml           paper settings (VAE row)
    gbvi20         configs/table1_gbvi20.toml        paper settings (GBVI_20 row)
    vae-reduced    configs/table1_vae_reduced.toml   about an hour on 2 CPU cores
    gbvi-reduced   configs/table1_gbvi_reduced.toml  about an hour on 2 CPU cores

For a ``gbvi`` row the refined bound (the run's own T and γ) is the number to set beside the
paper's; for a ``vae`` row, T = ``--refine-steps`` (0 by default). Summary in
RUN_DIR/table1_row.json; see ``paper_row.py`` for the options.
"""

from paper_row import run_row

ROWS = {
    "vae": "table1_vae.toml",
    "gbvi20": "table1_gbvi20.toml",
    "vae-reduced": "table1_vae_reduced.toml",
    "gbvi-reduced": "table1_gbvi_reduced.toml",
}

if __name__ == "__main__":
    run_row("table1", ROWS, description=__doc__.split("\n")[0])
