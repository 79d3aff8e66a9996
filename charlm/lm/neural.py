"""The recurrent model (charlm.nn) behind the language-model interface."""

from charlm.io import checkpoint
from charlm.nn.inference import Stepper, position_log_probs, score_ids


class NeuralLM:
    def __init__(self, loaded):
        self.path, self.config, self.vocab = loaded.path, loaded.config, loaded.vocab
        self.format_version = loaded.format_version
        self.model_config = checkpoint.model_config_from(loaded.config, loaded.format_version)
        self.params, _, _ = checkpoint.neural_arrays(loaded, self.model_config)
        self.parameters = sum(int(v.size) for v in self.params.values())
        self.adapt_rms = loaded.arrays.get("adapt/rms")   # dynamic evaluation's, if stored

    def describe(self):
        return self.model_config.describe()

    def score(self, ids, streams=1):
        return score_ids(self.params, self.model_config, ids, streams)

    def log_probs(self, ids, streams=1):
        return position_log_probs(self.params, self.model_config, ids, streams)

    def stepper(self):
        return Stepper(self.params, self.model_config)
