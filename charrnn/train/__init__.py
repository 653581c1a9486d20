"""`charrnn train`: its config, setup, loop, state, metrics, time budget (budget), automatic
model size (autosize), fine-tuning (finetune) and tf.distribute (distribute)."""
