"""Behavior data without a network, as a library: a SAC behavior agent (sac), D4RL-style Minari
datasets from its snapshots (datasets), the maze tasks and their controllers (mazes, goal_ant;
D4RL's AntMaze: d4rl_antmaze, d4rl_datasets), and the shipped policies (policies/).

The modules sit below the harness (harness/sources.py builds datasets with them) and import
nothing from it; they raise `dataset.DatasetError` for input they cannot use. Their command-line
scripts are tools/collect.py and tools/train_behavior.py."""
