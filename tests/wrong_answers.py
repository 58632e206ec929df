"""Plausible wrong answers to the lessons' exercises: each check must say "not yet" to them.

``WRONG_ANSWERS[lesson][check name]`` is a list of code cells; tests/test_notebooks.py runs each
one right after the check (the lesson having run as "Run All" runs it, the exercise untouched),
followed by a copy of the check, and fails if the check accepts it. Every check has at least one.
A wrong answer is the mistake a learner would plausibly make: the best setting read on the test
set instead of validation, frozen instead of trainable parameters, the right images drawn from the
wrong world, ... Each answer is complete on its own (it does not build on an earlier one).
"""

WRONG_ANSWERS: dict[str, dict[str, list[str]]] = {
    "00": {
        "a harder world": [
            # the noise doubled, the background forgotten
            "hard_world = replace(world, noise=2 * world.noise)\nhard_x, _ = hard_world.render(8, seed=4, device=device)",
            # the right world, but the images drawn from the old one
            "hard_world = replace(world, noise=2 * world.noise, backgrounds=('noise',))\n"
            "hard_x, _ = world.render(8, seed=4, device=device)",
        ],
    },
    "01": {
        "parameters of layer4": [
            "layer4_params = sum(p.numel() for p in model.layer3.parameters())",   # the stage before it
            "layer4_params = len(list(model.layer4.parameters()))",                # tensors, not numbers
        ],
        "accuracy on a noisier world": [
            # the noise forgotten: the clean accuracy
            "x_noisy, y_noisy = world.render(512, seed=777, device=device)\nnoisy_acc = accuracy(model, x_noisy, y_noisy)",
            # the noise set to 3 (intensity units), not three times the world's
            "x_noisy, y_noisy = replace(world, noise=3).render(512, seed=777, device=device)\n"
            "noisy_acc = accuracy(model, x_noisy, y_noisy)",
        ],
    },
    "02": {
        "a new 6-way head, everything trainable": [
            # a randomly initialised network of the same shape: not fine-tuning
            "from helpers.models import scratch_image_model\nmy_model = scratch_image_model(num_classes=task.num_classes)",
            # the pre-trained model with its old head (the general world's classes)
            "my_model, _ = pretrained_image_model(verbose=False)",
        ],
        "augmentation's gain on validation, over the seeds": [
            # the runs at the default rate, not the rate chosen on validation
            "no_aug = [run_finetune(S.headline_labels, seed=seed, budget=Budget(augment=False), setup=QUIET)\n"
            "          for seed in range(S.seeds)]\n"
            "aug_gain = 100 * difference([r.val_acc for r in finetuned[S.headline_labels]],\n"
            "                            [r.val_acc for r in no_aug]).diff",
        ],
        "gain over converged from scratch at the smallest label count": [
            # a share of 1, not points
            "gain_smallest = curve_table.finetuned_converged_acc.iloc[0] - curve_table.scratch_converged_acc.iloc[0]",
            # the headline label count, not the smallest
            "gain_smallest = 100 * (curve_table.finetuned_converged_acc.loc[S.headline_labels]\n"
            "                       - curve_table.scratch_converged_acc.loc[S.headline_labels])",
        ],
    },
    "03": {
        "frozen by name": [
            "named_model = freeze(build_model(), ['conv1', 'layer1'])",      # the stem's BatchNorm forgotten
        ],
        "best depth, chosen on validation": [
            # read on the test set instead of validation
            "best_depth = int(freeze_table['test_acc'].idxmax())\n"
            "best_depth_acc = float(freeze_table.loc[best_depth, 'test_acc'])",
        ],
        "decay of one third": [
            "groups = layerwise_lr_groups(build_model(), lr=1e-3, decay=2 / 3)",   # a third less, not a third of
        ],
    },
    "04": {
        "a one-output, non-negative head": [
            # the softplus forgotten: a count that can go negative
            "counter, _ = pretrained_image_model(verbose=False)\ncounter = replace_head(counter, 1)",
            # a randomly initialised network
            "from helpers.models import scratch_image_model\n"
            "counter = replace_head(scratch_image_model(), 1, activation='softplus')",
        ],
        "a 16-unit MLP head on the frozen backbone, compared on validation": [
            # the backbone left trainable (frozen_stages forgotten)
            "small_mlp = [run_finetune(task=species_shift_data(S.headline_labels, seed=seed),\n"
            "                          adaptation=Adaptation(head='mlp', hidden=16), lr=S.probe_lr, seed=seed,\n"
            "                          setup=QUIET) for seed in range(S.seeds)]\n"
            "small_minus_large = 100 * difference([r.val_acc for r in small_mlp],\n"
            "                                     [r.val_acc for r in runs['MLP head']]).diff",
        ],
    },
    "05": {
        "exact-count accuracy by hand": [
            "exact_by_hand = (pred.long() == data.y_test).float().mean().item()",   # truncated, not rounded
        ],
        "median baseline": [
            # the median of the test counts: the test set used to make the guess
            "def median_baseline_mae(train_counts, test_counts):\n"
            "    return (test_counts.float() - test_counts.float().median()).abs().mean().item()\n"
            "median_mae = median_baseline_mae(headline_train[1], data.y_test)",
            # the mean, not the median
            "def median_baseline_mae(train_counts, test_counts):\n"
            "    return (test_counts.float() - train_counts.float().mean()).abs().mean().item()\n"
            "median_mae = median_baseline_mae(headline_train[1], data.y_test)",
        ],
        "hardest count": [
            # grouped by the predicted count, not the true one
            "hardest_count = max(pred.round().unique().int().tolist(),\n"
            "                    key=lambda k: (pred[pred.round() == k] - data.y_test[pred.round() == k]).abs().mean().item())",
        ],
        "test-time augmentation": [
            # the mirrored scenes alone, not the average
            "tta_mae = count_metrics(predict_counts(counter, data.x_test.flip(-1)), data.y_test)['mae']",
        ],
    },
    "06": {
        "LoRA parameter count": [
            "def lora_params(c_in, c_out, k, r):\n    return r * c_in + c_out * r      # the kernel forgotten",
        ],
        "merged by hand": [
            "merged_conv = copy.deepcopy(wrapped.base)",     # the adapter's change never added
        ],
    },
    "07": {
        "unigram baseline": [
            # in bits (log2), not the natural log the model's loss uses
            "counts = torch.bincount(data.train_ids, minlength=len(tok)).float() + 1\n"
            "my_unigram = -(counts / counts.sum()).log2()[data.val_ids].mean().item()",
            # measured on the training tokens it was counted on
            "counts = torch.bincount(data.train_ids, minlength=len(tok)).float() + 1\n"
            "my_unigram = -(counts / counts.sum()).log()[data.train_ids].mean().item()",
        ],
        "sampling repeats for a seed": [
            # greedy: it repeats, but it does not sample
            "my_seed = 3\na = generate(model, prompt, 15, temperature=0, seed=my_seed)\n"
            "b = generate(model, prompt, 15, temperature=0, seed=my_seed)",
            # one call, the same tensor twice
            "my_seed = 3\na = b = generate(model, prompt, 15, temperature=1.0, seed=my_seed)",
        ],
        "characters per word": [   # the ratio upside down, and tokens of the wrong stream
            "chars_per_word = len(chars) / len(tok)",
            "chars_per_word = len(word_ids) / len(char_ids)"],
        "the step to keep": [
            # the lowest training loss
            "my_best_step = min(info['history']['evals'], key=lambda e: e['train_loss'])['step']",
            # the validation loss over all text, not over the facts the course keeps the model for
            "my_best_step = min(info['history']['evals'], key=lambda e: e['val_loss'])['step']",
        ],
    },
    "08": {
        "a long fine-tuning run": [
            # the steps not doubled
            "fast, _, _ = pretrained_lm(verbose=False)\n"
            "h_fast = finetune_qa(fast, tok, qa, lr=1e-3,\n"
            "                     budget=Budget(steps=S.steps, batch_size=S.batch_size, eval_every=S.eval_every,\n"
            "                                   keep_best=False))",
        ],
        "labelled positions": [    # every position of the sequence, not only the answer's
            "_, y_all = qa_tensors(tok, qa.train, answer_only=False)\n_, y_ans = qa_tensors(tok, qa.train)\n"
            "label_ratio = (y_ans != IGNORE).sum().item() / (y_all != IGNORE).sum().item()"],
        "your own question": [     # a question the test set already asks, word for word
            "my_prompt = qa.test[0].prompt\nmy_answer = answer(finetuned, tok, my_prompt)"],
        "reachable knowledge": [
            # no fact reachable (as in smoke mode, where every accuracy is 0) left undefined: NaN, not 0.
            # (The plainer mistake, the mean over every test question, is told apart only where the
            # accuracies are not all 0: add it once the quick mode has such numbers.)
            "probe_ok = answers_correct(pretrained, tok, world.fill_in_probes(\n"
            "    [qa.test[i].disease for i in range(0, len(qa.test), 3 * len(DISEASE_ATTRIBUTES))]), eos=False)\n"
            "question_ok = answers_correct(finetuned, tok, qa.test).view(-1, 3).float().mean(1)\n"
            "reachable = question_ok[probe_ok].mean().item()",
        ],
    },
    "09": {
        "cloze prompts for the town": [   # the held-out diseases' sentences, not the test names'
            "my_prompts = [q for q in world.heldout_cloze(test_names) if q.attribute == 'town']"],
        "few-shot curve": [
            # the prompts built but never scored: prompts, not accuracies. (One to three examples, or
            # the test items, are told apart only where the accuracies are not all 0, unlike smoke mode's.)
            "shot_curve = [few_shot(val_items, qa.train, k=k, tok=tok, context=config.context) for k in range(3)]",
        ],
    },
    "10": {
        "softened probabilities": [
            # a temperature above 1, but not the 8 asked for
            "probs_t1 = F.softmax(logits0, dim=0)\nprobs_t8 = F.softmax(logits0 / 2, dim=0)",
        ],
        "pseudo-labels": [
            "pseudo_labels = soft_u.argmax(dim=1)        # every view, the labelled ones too",
        ],
    },
    "11": {
        "the most copied sample": [
            # measured against fresh orcas, not the training ones
            "dist, _ = feature_nearest(judge, ft_samples, real_orcas)\n"
            "closest_sample, closest_distance = int(dist.argmin()), float(dist.min())",
        ],
        "memorisation ratio of very noisy copies": [
            # the lesson's noise (0.03), not ten times it
            "noisy_copies = finetune_set[torch.arange(S.eval_samples) % len(finetune_set)]\n"
            "noisy_copies = (noisy_copies + 0.03 * torch.randn_like(noisy_copies)).clamp(0, 1)\n"
            "noisy_ratio = feature_memorisation_ratio(judge, noisy_copies, finetune_set, real_orcas)",
            # measured in pixels, not in the judge's feature space
            "noisy_copies = finetune_set[torch.arange(S.eval_samples) % len(finetune_set)]\n"
            "noisy_copies = (noisy_copies + 0.3 * torch.randn_like(noisy_copies)).clamp(0, 1)\n"
            "noisy_ratio = memorisation_ratio(noisy_copies, finetune_set, real_orcas)",
        ],
    },
    "12": {
        "effective batch and scaled rate": [
            "effective_batch, scaled_lr = 32, 1e-3",             # one device's batch, the rate unchanged
            "effective_batch, scaled_lr = 128, 1e-3 * 2",        # the square-root rule, not the linear one
        ],
        "gradient bytes per step": [
            # the new head forgotten in the LoRA count
            "full_bytes = 4 * sum(p.numel() for p in build_model(seed=0).parameters())\n"
            "lora = train_only_lora(add_lora(build_model(seed=0), ['layer3.*.conv*', 'layer4.*.conv*'], rank=4))\n"
            "lora_bytes = 4 * sum(p.numel() for p in lora.parameters() if p.requires_grad)",
        ],
    },
    "13": {
        "chosen on validation": [
            "chosen_row = best",      # the search's own result object, not a row of the table
        ],
    },
}
