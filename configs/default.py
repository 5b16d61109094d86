"""The paper's hyperparameters (Waissbluth, Gillick, Cella: "Synthesis by Layering").

Variants import this file and override a few fields. `get_config('smoke')` is a tiny run for CI.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    # Corpus: one-shots at 22.05 kHz, 1 s, normalised (Section 3.1).
    c.data = d = ml_collections.ConfigDict()
    d.roots = ()  # folders / kit files; empty: the open kits installed or fetched, else synthetic
    d.synthetic = False  # True: procedural snares unless data.roots names samples (CI, demos)
    d.category = "snare"
    d.max_duration = 30.0  # seconds; longer files are loops or songs, not one-shots
    d.near_duplicate = 0.9  # onset-waveform correlation that makes two clips one group
    d.split = (0.8, 0.1, 0.1)  # train / val / test, by kit and near-duplicate group
    # The out-of-library test set: folders or files never trained on (nor sources, nor
    # augmented), with every near-copy of their clips elsewhere. An absolute path, or a name
    # matched as whole path components under the roots; the default holds out the Fluid R3 GM
    # soundfont's kits when the corpus has them (the open kits). () : none.
    d.holdout = ("FluidR3_GM.sf2",)
    d.augment_per_clip = 0  # augmented variants of each training target
    d.validate_variants = True  # the val clips' augmented variants validate too (16x rows)
    d.layered_per_clip = 0  # layered targets: a training clip with 1-2 others mixed under it
    d.train_fraction = 1.0  # < 1: a learning curve: that share of the distinct training clips
    # (all their variants) are targets; the sources are still chosen from all of them
    d.train_fraction_of = "clips"  # drawn clip by clip, or 'kits': whole kits until the share
    d.procedural = 300  # synthetic snares generated when no samples are found

    # Features (Section 3.2): RMS-weighted magnitude spectrum + log-attack time.
    c.features = f = ml_collections.ConfigDict()
    f.n_fft = 4096
    f.hop = 512
    f.compression = "linear"  # or 'log' (log1p of the magnitudes)
    f.batch = 512  # clips per feature computation step

    # Source library (Section 3.1): greedy Frank-Wolfe over the real training clips.
    c.selection = s = ml_collections.ConfigDict()
    s.k = 200
    s.beta = 1000.0
    s.method = "frank_wolfe"  # or 'random', 'k_medoids' (ablations)
    s.pool = "train"  # 'train+augmented': augmented variants may become sources too
    s.pool_categories = ()  # kit job: other categories whose training clips may be sources too

    # The VAE (Section 3.3).
    c.model = m = ml_collections.ConfigDict()
    m.latent = 32
    m.encoder_hidden = 1500
    m.decoder_hidden = 144
    m.normaliser = "softmax"  # or 'sparsemax' (exactly sparse), 'relu' (relu / sum)

    # Training (Section 3.4): discriminative pretraining on the sources, then the VAE.
    c.train = t = ml_collections.ConfigDict()
    t.batch = 64  # global: split over all devices
    t.learning_rate = 1e-3
    t.grad_clip = 1.0
    t.weight_decay = 0.0  # > 0: AdamW (decoupled weight decay)
    t.input_dropout = 0.0  # share of the encoder's input features dropped in training steps
    t.pretrain_epochs = 50
    t.epochs = 150  # the most: with patience, phase 2 stops once validation stops improving
    t.patience = 20  # epochs without a better validation loss before phase 2 stops; 0: never
    t.beta = 0.02
    t.free_bits = 1000.0  # bits of KL allowed before it is penalised (MusicVAE)
    t.db_weight = 0.0  # > 0: adds the mean squared dB difference of the spectra (losses.py)
    t.spectrum = "auto"  # the mix's spectrum: 'fft' of the mix, 'linear' from the sources'
    # STFTs (equal up to rounding; faster on a CPU with few sources); 'auto' picks (losses.py)
    t.cpu_devices = 1  # JAX devices a CPU becomes for the data-parallel step; 0: one per core
    t.steps_per_call = 16  # most steps a device call (one lax.scan); SIGTERM saves after the call
    t.checkpoint_every_s = 60.0  # also at each phase's end and on SIGTERM; 0: every epoch
    t.profile = False  # True: a jax.profiler trace of one call in WORKDIR/profile (TensorBoard)

    # Batch evaluation (Section 4) and the studio's sliders.
    c.evaluate = e = ml_collections.ConfigDict()
    e.components = 11  # principal directions of the latent means
    e.pairs = 200  # interpolation pairs from the test set (ordered, distinct, seeded)
    e.points = 21  # points along each interpolation, ends included
    e.pca_range = 20.0  # traversals go z +- pca_range * u_j (the paper: +-20 along u_0)
    e.pca_points = 21
    e.audio_examples = 3  # reconstructions and interpolations written as WAV
    e.generation_draws = 256  # sounds drawn from the space per set (evaluation.generation)

    if arg == "smoke":
        d.synthetic = True  # CI must not depend on what the machine has installed
        d.procedural = 48
        c.selection.k = 8
        c.selection.beta = 100.0
        c.model.encoder_hidden = 64
        c.model.decoder_hidden = 16
        c.model.latent = 4
        c.train.batch = 16
        c.train.pretrain_epochs = 2
        c.train.epochs = 2
        d.max_duration = 5.0
        e.pairs = 12
        e.points = 5
        e.pca_points = 5
        e.generation_draws = 32
    return c
