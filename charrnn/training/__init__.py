"""`charrnn train`'s library: the settings (settings, settingtypes) and config, setup, loop,
state, metrics, validation, time budget (budget), automatic model size (autosize), fine-tuning
(finetune) and tf.distribute (distribute).  Named training, not train, so that a function
``charrnn.train`` (the Python API) is not shadowed by the subpackage once it is imported."""
