"""What a training run prints: one line per epoch with its metrics, and a progress bar over the training steps —
instead of the `Trainer`'s dictionary per logging step and bar per evaluation."""

import sys
import time

from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm
from transformers import TrainerCallback


# (key of the evaluation metrics, name in the line): shown when the evaluation has them.
EPOCH_COLUMNS = (("eval_loss", "val loss"), ("eval_accuracy", "accuracy"), ("eval_macro_f1", "macro-F1"), ("eval_uar", "UAR"))


class EpochProgressCallback(TrainerCallback):
    """Replaces the `Trainer`'s `ProgressCallback` / `PrinterCallback`: a bar over the optimizer steps (unless
    `disable_tqdm`; redrawn at most every `file_interval` seconds when the output is a file, not a terminal, so a
    log stays short) and, after each evaluation during training, one line:

        epoch 3/30  train loss 1.234  val loss 1.101  accuracy 0.550  macro-F1 0.512  UAR 0.530  (41 s)
    """

    def __init__(self, file_interval: float = 30.0):
        self.file_interval = file_interval
        self.bar = None
        self.training = False
        self.train_loss = None
        self.started = 0.0
        self._redirect = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.training, self.train_loss, self.started = True, None, time.monotonic()
        if state.is_world_process_zero and not args.disable_tqdm:
            interactive = sys.stdout.isatty()
            self.bar = tqdm(
                total=state.max_steps,
                desc="training",
                unit="step",
                file=sys.stdout,
                leave=False,
                dynamic_ncols=interactive,
                mininterval=0.5 if interactive else self.file_interval,
                maxinterval=max(10.0, self.file_interval),
            )
            # Log records (e.g. the unfreezing stages) go above the bar instead of through it.
            self._redirect = logging_redirect_tqdm()
            self._redirect.__enter__()

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.train_loss = logs["loss"]

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not (self.training and state.is_world_process_zero and metrics):
            return
        columns = [f"epoch {round(state.epoch or 0):d}/{round(args.num_train_epochs):d}" if args.max_steps <= 0
                   else f"step {state.global_step}/{state.max_steps}"]  # fmt: skip
        if self.train_loss is not None:
            columns.append(f"train loss {self.train_loss:.3f}")
        columns += [f"{name} {metrics[key]:.3f}" for key, name in EPOCH_COLUMNS if key in metrics]
        columns.append(f"({time.monotonic() - self.started:.0f} s)")
        line = "  ".join(columns)
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def on_train_end(self, args, state, control, **kwargs):
        self.training = False
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None
