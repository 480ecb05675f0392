"""Counts to posterior: priors, restriction, the network, training, posterior, persistence, rounds.

Modules, lowest first: ``priors`` (numpy: the user's box prior), ``truncation``
(the prior times a region's indicator), ``config`` (``NPEConfig``, errors),
``latent`` (box <-> unconstrained space), ``features`` (counts -> network
inputs), ``torch_state`` (device, seeded generator, threads), ``flows``
(conditional MAF), ``networks`` (flow factory, ensembles), ``persistence``
(saved networks, fingerprints), ``posterior`` (``NeuralPosterior``),
``training`` (``train_npe``, one round), ``rounds`` (HPD truncation,
multi-round), ``restrict`` (restricted priors). ``priors``, ``truncation``,
``config``, ``latent`` and ``features`` are free of torch; nothing is imported
here, so importing them does not bring torch in.
"""
