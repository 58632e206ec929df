"""The fine-tuning course's package: the mechanisms every lesson shares, at the top level, and
each lesson's harness (task, experiment runners, figures) in ``helpers.lessons``."""
