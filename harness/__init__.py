"""Run plumbing shared by the training scripts: flags (cli), the experiment around the agents
(experiment), many seeds per process (multiseed), and what a run writes (outputs)."""
