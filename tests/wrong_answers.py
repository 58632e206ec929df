"""Plausible wrong answers to the lessons' exercises: each check must say "not yet" to them.

``WRONG_ANSWERS[lesson][check name]`` is a list of code cells; tests/test_notebooks.py runs each
one (after the starter, before the folded solution) followed by a copy of the check, and fails if
the check accepts it. A wrong answer is the mistake a learner would plausibly make: the best
setting read on the test set instead of validation, frozen instead of trainable parameters, ...
"""

WRONG_ANSWERS: dict[str, dict[str, list[str]]] = {
    "00": {
        "a harder world": [   # the noise doubled, the background forgotten
            "hard_world = replace(world, noise=2 * world.noise)\nhard_x, _ = hard_world.render(8, seed=4, device=device)"],
    },
    "01": {
        "parameters of layer4": [   # the stage before it
            "layer4_params = sum(p.numel() for p in model.layer3.parameters())"],
    },
}
