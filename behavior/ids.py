"""The ids of the datasets this project builds: `local/<family>/<kind>-v<version>`.

<family> is the env's for locomotion (hopper, walker2d, halfcheetah, ...: behavior/datasets.py),
`antmaze` or `pointmaze` (Gymnasium-Robotics' maze envs: behavior/mazes.py), or `d4rl-antmaze`
(D4RL's AntMaze rebuilt: behavior/d4rl_datasets.py). <version> is the family's recipe, one for
all its kinds, raised when a change to the recipe changes the data (as Minari versions its ids).

A former name of a set whose data did not change loads as the set (`current`).
"""

VERSIONS = {"antmaze": 1, "pointmaze": 1, "d4rl-antmaze": 1}  # every other family (locomotion): 0
# Same recipe, same arrays: the D4RL AntMaze kinds were -v0 while umaze-diverse alone was -v1
# (its -v0, continuing episodes, was another recipe and is no former name).
FORMER = {f"local/d4rl-antmaze/{kind}-v0": f"local/d4rl-antmaze/{kind}-v1"
          for kind in ("umaze", "medium-play", "medium-diverse", "large-play", "large-diverse")}


def version(family: str) -> int:
    return VERSIONS.get(family, 0)


def make(family: str, kind: str, namespace: str = "local") -> str:
    return f"{namespace}/{family}/{kind}-v{version(family)}"


def parse(ds_id: str) -> tuple[str, str, str] | None:
    """'local/hopper/medium-v0' -> ('hopper', 'medium', '0'); None for an id of another namespace
    or shape."""
    parts = ds_id.split("/")
    if len(parts) != 3 or parts[0] != "local":
        return None
    kind, _, ver = parts[2].rpartition("-v")
    return (parts[1], kind, ver) if kind and ver.isdigit() else None


def current(ds_id: str) -> str:
    """The set's current id: `ds_id` itself, or the id a former name now has."""
    return FORMER.get(ds_id, ds_id)


def former_names(ds_id: str) -> list[str]:
    return [old for old, new in FORMER.items() if new == ds_id]
