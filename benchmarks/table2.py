"""Run one row of seed 003's Table 2 (binary latents, SBNs): train from its config, then evaluate.

    python benchmarks/table2.py --row avi20-reduced --refine-steps 20 --refine-samples 20
    python benchmarks/table2.py --row nvil-reduced           # -> runs/table2-nvil-reduced/eval.json

Rows and configs (paper settings: Adam 3e-4, batch 10, early stopping, at most 500 epochs;
reduced: about an hour each on 2 CPU cores, see each file's header):
    wake-sleep, wake-sleep-reduced       configs/table2_wake_sleep{,_reduced}.toml   784-200 linear
    nvil, nvil-reduced                   configs/table2_nvil{,_reduced}.toml         (240) softplus
    avi20, avi20-reduced                 configs/table2_avi20{,_reduced}.toml        784-200 linear
    avi20-240, avi20-240-reduced         configs/table2_avi20_240{,_reduced}.toml    (240) softplus

Test bound and NLL use q as the importance proposal (k = 5000, as the table reports them); for an
``avi`` row the refined numbers use ``--refine-steps`` AVI steps (Eq. 9) at test time. Summary in
RUN_DIR/table2_row.json; see ``paper_row.py`` for the options.
"""

from paper_row import run_row

ROWS = {
    "wake-sleep": "table2_wake_sleep.toml",
    "wake-sleep-reduced": "table2_wake_sleep_reduced.toml",
    "nvil": "table2_nvil.toml",
    "nvil-reduced": "table2_nvil_reduced.toml",
    "avi20": "table2_avi20.toml",
    "avi20-reduced": "table2_avi20_reduced.toml",
    "avi20-240": "table2_avi20_240.toml",
    "avi20-240-reduced": "table2_avi20_240_reduced.toml",
}

if __name__ == "__main__":
    run_row("table2", ROWS, description=__doc__.split("\n")[0])
