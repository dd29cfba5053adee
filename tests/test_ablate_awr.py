"""tools/ablate_awr.py: IQL with shuffled AWR weights, run through train_offline.py's loop."""

import json
import sys
from unittest import mock

import numpy as np
import pytest
from conftest import ROOT, parse_flags, read_csv, run_main

import train_offline
from harness import algorithms, cli
from tools import ablate_awr


def test_the_shuffled_awr_control_trains_through_train_offline(toy, tmp_path, monkeypatch):
    monkeypatch.setitem(algorithms.ALGORITHMS, ablate_awr.ALGO, ablate_awr.ALGORITHM)  # undone after the test
    path, env_id = toy
    args = [f"--config={ROOT}/configs/iql_mujoco.py:smoke", f"--dataset={path}", f"--env_name={env_id}",
            f"--workdir={tmp_path / 'run'}", "--config.hidden_dims=(32,32)", "--config.batch_size=64",
            "--config.reward_transform=none", "--config.tensorboard=False", "--config.eval_episodes=1"]
    argv = parse_flags(train_offline, *args)
    with mock.patch.object(sys, "argv", argv):
        ablate_awr.main(argv[:1])
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["algo"] == ablate_awr.ALGO
    ess = np.array([float(r["awr_weight_ess"]) for r in read_csv(tmp_path / "run" / "train.csv")])
    assert len(ess) > 0 and np.all((ess > 0) & (ess <= 1)), ess
    # train_offline.py alone does not know the algorithm, and says so.
    monkeypatch.delitem(algorithms.ALGORITHMS, ablate_awr.ALGO)
    with pytest.raises(cli.UserError, match=ablate_awr.ALGO):
        run_main(train_offline, *args[:3], f"--workdir={tmp_path / 'other'}", *args[4:], f"--config.algo={ablate_awr.ALGO}")
