"""Models as the user saved them: loading, adapting, built-in architectures and their training.

:mod:`.loading` turns a checkpoint, a TorchScript file, a state dict with a
factory or a plain ``nn.Module`` into the :class:`aeinterp.model.Model`
protocol (``torch.load(weights_only=True)`` by default); :mod:`.architectures`
holds the built-in MLP, convolutional, LSTM/GRU autoencoders and VAEs;
:mod:`.training` trains them. The protocol itself lives in
:mod:`aeinterp.model` (a base type). Built on the base types and the toolkit's checks.
"""
