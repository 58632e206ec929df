"""Plausible wrong answers to the lessons' exercises: each check must say "not yet" to them.

``WRONG_ANSWERS[lesson][check name]`` is a list of code cells; tests/test_notebooks.py runs each
one (after the starter, before the folded solution) followed by a copy of the check, and fails if
the check accepts it. A wrong answer is the mistake a learner would plausibly make: the best
setting read on the test set instead of validation, frozen instead of trainable parameters, ...
"""

WRONG_ANSWERS: dict[str, dict[str, list[str]]] = {
    "02": {
        "augmentation's gain on validation, over the seeds": [
            # the runs at the default rate, not the rate chosen on validation
            "no_aug = [run_finetune(S.headline_labels, seed=seed, augment=False, progress=False)\n"
            "          for seed in range(S.seeds)]\n"
            "aug_gain = 100 * difference([r.val_acc for r in finetuned[S.headline_labels]],\n"
            "                            [r.val_acc for r in no_aug]).diff",
        ],
    },
    "03": {
        "best depth, chosen on validation": [
            # read on the test set instead of validation
            "best_depth = int(freeze_table['test_acc'].idxmax())\n"
            "best_depth_acc = float(freeze_table.loc[best_depth, 'test_acc'])",
        ],
    },
    "04": {
        "a 16-unit MLP head on the frozen backbone, compared on validation": [
            # the backbone left trainable (frozen_stages forgotten)
            "small_mlp = [run_finetune(task=species_shift_data(S.headline_labels, seed=seed), head='mlp', hidden=16,\n"
            "                          lr=S.probe_lr, seed=seed, progress=False) for seed in range(S.seeds)]\n"
            "small_minus_large = 100 * difference([r.val_acc for r in small_mlp],\n"
            "                                     [r.val_acc for r in runs['MLP head']]).diff",
        ],
    },
    "06": {
        "LoRA parameter count": [
            "def lora_params(c_in, c_out, k, r):\n    return r * c_in + c_out * r      # the kernel forgotten",
        ],
    },
    "10": {
        "pseudo-labels": [
            "pseudo_labels = soft_u.argmax(dim=1)        # every view, the labelled ones too",
        ],
    },
    "00": {
        "a harder world": [   # the noise doubled, the background forgotten
            "hard_world = replace(world, noise=2 * world.noise)\nhard_x, _ = hard_world.render(8, seed=4, device=device)"],
    },
    "01": {
        "parameters of layer4": [   # the stage before it
            "layer4_params = sum(p.numel() for p in model.layer3.parameters())"],
    },
    "07": {
        "characters per word": [   # the ratio upside down, and tokens of the wrong stream
            "chars_per_word = len(chars) / len(tok)",
            "chars_per_word = len(word_ids) / len(char_ids)"],
    },
    "08": {
        "labelled positions": [    # every position of the sequence, not only the answer's
            "_, y_all = qa_tensors(tok, qa.train, answer_only=False)\n_, y_ans = qa_tensors(tok, qa.train)\n"
            "label_ratio = (y_ans != IGNORE).sum().item() / (y_all != IGNORE).sum().item()"],
        "your own question": [     # a question the test set already asks, word for word
            "my_prompt = qa.test[0].prompt\nmy_answer = answer(finetuned, tok, my_prompt)"],
    },
    "09": {
        "cloze prompts for the town": [   # the held-out diseases' sentences, not the test names'
            "my_prompts = [q for q in world.heldout_cloze(test_names) if q.attribute == 'town']"],
    },
}
