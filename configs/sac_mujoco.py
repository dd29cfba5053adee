"""SAC behavior agent for making datasets (train_behavior.py), the usual MuJoCo settings.

    python -m tools.train_behavior --config=configs/sac_mujoco.py --env=Hopper-v5
    python -m tools.train_behavior --config=configs/sac_mujoco.py:smoke --env=Pendulum-v1   # tiny
"""

import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # Hidden layer widths of actor and twin critic.
    config.hidden_dims = (256, 256)
    # Adam learning rates.
    config.actor_lr = 3e-4
    config.critic_lr = 3e-4
    config.temperature_lr = 3e-4
    # Initial entropy temperature alpha (auto-tuned towards entropy -action_dim).
    config.init_temperature = 1.0
    # Discount factor and Polyak rate of the target critic.
    config.discount = 0.99
    config.target_tau = 0.005
    # Transitions per gradient step.
    config.batch_size = 256
    # Environment steps (one gradient step each once training starts).
    config.max_steps = 1_000_000
    # Uniformly random actions for the first steps, to fill the buffer.
    config.start_steps = 10_000
    # Env steps per compiled call: the chunk is inserted, then as many updates run in one scan.
    config.steps_per_call = 50
    # Save the actor and evaluate it (deterministic, eval_episodes) every this many steps.
    config.snapshot_interval = 10_000
    config.eval_episodes = 10
    # Save everything needed to resume every this many steps.
    config.checkpoint_interval = 50_000
    if variant == "smoke":
        config.hidden_dims = (64, 64)
        config.max_steps = 6_000
        config.start_steps = 1_000
        config.snapshot_interval = 2_000
        config.checkpoint_interval = 2_000
        config.eval_episodes = 5
    elif variant:
        raise ValueError(f"unknown config variant {variant!r}; the only one is 'smoke'")
    return config
