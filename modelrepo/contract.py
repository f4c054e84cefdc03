"""The names and patterns of the `vae-onnx/1` contract (shared/CONTRACT.md, section 1), each spelled once here.

training/ writes models with them and service/ reads models with them; changing one is a format change.
"""

FORMAT = "vae-onnx/1"

# A version folder: <name>/<version>/ holding these files (the manifest may name other graph files).
MANIFEST_FILE = "manifest.json"
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"

MODEL_NAME = r"[a-z0-9][a-z0-9._-]{0,63}"
MODEL_VERSION = r"[1-9][0-9]{0,17}"  # a positive integer, exact in a JSON number
NAME_PATTERN = rf"^{MODEL_NAME}$"
REFERENCE_PATTERN = rf"^{MODEL_NAME}(:{MODEL_VERSION})?$"  # how a request names a model: "name" or "name:version"
VERSION_PATTERN = rf"^{MODEL_NAME}:{MODEL_VERSION}$"  # one version, exactly: "name:version"

# The graphs' inputs and outputs, batch axis first.
ENCODER_INPUT = "x"  # [batch, *data_shape]
ENCODER_OUTPUTS = ("mu", "logvar")  # Gaussian latents: each [batch, latent_dim]
ENCODER_LOGITS = "logits"  # categorical latents: [batch, groups, categories]
DECODER_INPUT = "z"  # [batch, latent_dim]; categorical latents: [batch, groups, categories]
DECODER_CONDITION = "x"  # autoregressive decoders only: [batch, *data_shape], the x whose earlier positions condition each output
DECODER_OUTPUTS = {  # likelihood type -> the decoder's outputs, each [batch, *data_shape]
    "bernoulli": ("logits",),
    "gaussian": ("mean", "logvar"),
}
LIKELIHOODS = tuple(DECODER_OUTPUTS)

# manifest "latent" (optional; a missing one means Gaussian latents) and "prior" types. Each latent type takes
# its own priors; the first is what a missing "prior" means.
GAUSSIAN_LATENT = "gaussian"
CATEGORICAL_LATENT = "categorical"
STANDARD_NORMAL = "standard_normal"
MIXTURE_OF_GAUSSIANS = "mixture_of_gaussians"
UNIFORM_CATEGORICAL = "uniform_categorical"
CATEGORICAL_PRIOR = "categorical"
PRIORS_OF_LATENT = {
    GAUSSIAN_LATENT: (STANDARD_NORMAL, MIXTURE_OF_GAUSSIANS),
    CATEGORICAL_LATENT: (UNIFORM_CATEGORICAL, CATEGORICAL_PRIOR),
}
LATENTS = tuple(PRIORS_OF_LATENT)
PRIORS = tuple(prior for priors in PRIORS_OF_LATENT.values() for prior in priors)

# How a log p(x) was computed (manifest metrics' and /loglik's "method"): k importance samples of z ~ q(z|x), or
# the exact sum over every latent (categorical latents with few configurations).
IMPORTANCE, EXACT = "importance", "exact"

# A version's optional reference (section 3): the scores of held-out points, for conformal p-values.
REFERENCE_FILE = "reference.json"
REFERENCE_FORMAT = "vae-reference/1"
LOGLIK_SCORE, LIKELIHOOD_RATIO = "loglik", "likelihood_ratio"  # its "score": log p(x), or log p(x) - log p_bg(x)
