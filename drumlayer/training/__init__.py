"""Training the layering VAE, data-parallel over every device, resumable.

options (TrainConfig), losses, optimizer, steps (the sharded train and eval steps), distributed
(mesh, multi-host), aot (compilation ahead of time), checkpoints (Orbax, preemption),
ledger (metrics.jsonl and TensorBoard), loop (the two phases).
"""
