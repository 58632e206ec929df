"""Lesson harnesses: each module owns one lesson's task, experiment runners and figures.

They compose the mechanisms in ``helpers`` (training, surgery, LoRA, the worlds, ...) and never
import each other; what two lessons share lives in ``helpers`` itself (tests/test_layout.py).
"""
