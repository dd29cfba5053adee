"""Evaluation of every seed's agent at once: one vector env holds all seeds' episodes and each env
step is one batched policy call (evaluation.py rolls them out); a seed's episodes and actions
come from its "evaluation" key stream, so they are the same whether it trains alone or with
others."""

import itertools
import os
import time
from typing import Callable, Optional

import jax
import numpy as np

import evaluation
from harness import multiseed


class Evaluator:
    """`evaluate(agents, step)` -> per-seed columns of eval.csv; `video(agents, step, path)`."""

    def __init__(self, make_env: Optional[Callable], seeds: list[int], episodes: int, ref_min, ref_max,
                 temperature: Optional[float] = None, seconds: float = 0.0):
        """`temperature` None: each agent's own evaluation action (`sample_actions` without one)."""
        self.make_env, self.seeds, self.episodes = make_env, list(seeds), episodes
        self.ref_min, self.ref_max, self.temperature = ref_min, ref_max, temperature
        self.keys = [multiseed.seed_streams(s)["evaluation"] for s in self.seeds]
        self.seconds = seconds  # time spent evaluating, summed over the run (resumed runs too)

    def due(self, step: int, interval: int, last_step: int) -> bool:
        return self.episodes > 0 and (step % interval == 0 or step == last_step)

    def evaluate(self, agents, step: int) -> Optional[dict]:
        """{column: (num_seeds,) values}: return (mean over the seed's episodes), normalized_score
        (None without reference returns), return_std, and success_rate for envs that report
        success (mazes: episodes end at the goal with return 1, so with references (0, 1) the
        normalised score is 100 x this rate, as D4RL's AntMaze), flip_rate for envs that report
        a turned-over body (D4RL's AntMaze), and tasks_completed for Franka Kitchen (tasks done per
        episode; with references (0, 4) the normalised score is 25 per task, as D4RL's Kitchen).
        None on processes but the first."""
        tic = time.perf_counter()
        n, episodes = len(self.seeds), self.episodes
        env_seeds = [self.episode_seed(key, step) + j for key in self.keys for j in range(episodes)]
        policy = self.policy(agents, episodes, step)  # every process: it gathers the agents
        columns = None
        if jax.process_index() == 0:
            result = evaluation.evaluate(policy, self.make_env, len(env_seeds), env_seeds)
            returns = result["returns"].reshape(n, episodes)
            means = returns.mean(axis=1)
            scores = [evaluation.normalized_score(float(m), self.ref_min, self.ref_max) for m in means]
            columns = {"return": means, "normalized_score": [None if s is None else float(s) for s in scores],
                       "return_std": returns.std(axis=1)}
            if result["successes"] is not None:
                columns["success_rate"] = result["successes"].reshape(n, episodes).mean(axis=1)
            if result["flips"] is not None:
                columns["flip_rate"] = result["flips"].reshape(n, episodes).mean(axis=1)
            if result["tasks"] is not None:
                columns["tasks_completed"] = result["tasks"].reshape(n, episodes).mean(axis=1)
        self.seconds += time.perf_counter() - tic
        return columns

    @staticmethod
    def score(columns: Optional[dict]) -> float:
        """The mean over seeds of the normalised score (of the return without references)."""
        if columns is None:
            return float("nan")
        scores = columns["normalized_score"]
        return float(np.mean(columns["return"] if any(s is None for s in scores) else scores))

    @staticmethod
    def episode_seed(eval_key, step: int) -> int:
        """Seed of a seed's first evaluation episode at `step` (its key folded with the step)."""
        return int(jax.random.randint(jax.random.fold_in(eval_key, step), (), 0, 2**30))

    def policy(self, agents, episodes: int, step: int) -> Callable:
        """(num_seeds * episodes, obs_dim) observations -> actions, seed i's agent acting on rows
        i * episodes .. (i + 1) * episodes - 1. Each call (env step) acts with a fresh key: the
        seed's key folded with the training step, then with the call's index, so a stochastic
        policy (IDQL's sampler) draws anew at every env step of every evaluation."""
        acting = agents if jax.process_count() == 1 else jax.device_put(multiseed.fetch(agents), jax.local_devices()[0])
        n = len(self.seeds)
        keys = jax.numpy.stack([jax.random.fold_in(key, step) for key in self.keys])
        calls = itertools.count()

        def policy(obs):
            actions = multiseed.sample_actions(acting, obs.reshape(n, episodes, -1),
                                               multiseed.fold_keys(keys, next(calls)), self.temperature)
            return np.asarray(actions).reshape(n * episodes, -1)

        return policy

    def video(self, agents, step: int, workdir: str) -> Optional[str]:
        """The first seed's first evaluation episode at `step`, to <workdir>/video.mp4."""
        if self.make_env is None:
            print("--video: no evaluation env is known for this dataset (pass --env_name); no video written")
            return None
        policy, n = self.policy(agents, 1, step), len(self.seeds)  # every process: it gathers the agents
        if jax.process_index() != 0:
            return None
        first_seed = lambda obs: policy(np.repeat(obs, n, axis=0))[:1]  # noqa: E731  (the other seeds idle)
        path = os.path.join(workdir, "video.mp4")
        try:
            result = evaluation.record_video(first_seed, self.make_env, self.episode_seed(self.keys[0], step), path)
        except Exception as e:  # rendering is optional: the run's results are already saved
            hint = "" if os.environ.get("MUJOCO_GL") else " (MuJoCo envs render off-screen with MUJOCO_GL=egl or osmesa)"
            print(f"--video: no video written: {type(e).__name__}: {e}{hint}")
            return None
        print(f"wrote {path} (seed {self.seeds[0]}, return {result['return']:.1f}, {result['length']} steps)")
        return path
