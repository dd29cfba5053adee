"""What the training scripts share, in small pieces named for what they are: flags and errors
(cli), which agent trains and who reads each config field (algorithms), where the data and env
come from (sources), the seed mesh (multiseed), the work directory (rundir), evaluation
(evaluate), the metrics writer and checkpointer (outputs), how a run stops early (stops), and
the online phase's machinery (online). The loops themselves are in the scripts."""
