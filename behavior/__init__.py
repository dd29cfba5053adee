"""Behavior data without a network: a SAC behavior agent (sac), its training script
(train_behavior), D4RL-style Minari datasets from its snapshots (datasets, collect), the maze
tasks and their controllers (mazes, goal_ant; D4RL's AntMaze: d4rl_antmaze, d4rl_datasets), and
the shipped policies (policies/).

The library modules sit below the harness (harness/sources.py builds datasets with them) and
import nothing from it; they raise `dataset.DatasetError` for input they cannot use. The two
scripts, collect.py and train_behavior.py, use the harness's flags and output files as every
script does."""
