"""Behavior data without a network: a SAC behavior agent (sac), its training script
(train_behavior), D4RL-style Minari datasets from its snapshots (datasets, collect), and the
shipped policies (policies/)."""
