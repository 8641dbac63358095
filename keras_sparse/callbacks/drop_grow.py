"""Drop and grow rules of dynamic sparse training: small parts that compose.

A rule scores every position of one prunable weight. Used as the drop rule,
the lowest-scored active weights are dropped; used as the grow rule, the
highest-scored inactive positions are grown. Rules add up:
`Gradient() + Exploration(c=1e-3)` is DST-EE's grow score. A redistribution
decides how many connections each layer regrows when layers may trade
budget (SNFS). All of them are exported in `ks.callbacks`.
"""


import keras
import tensorflow as tf

from keras_sparse.layers import inplace
from keras_sparse.masks import stateless_uniform
from keras_sparse.utils.argument_validation import check_choice, check_int, check_number
from keras_sparse.utils.serialization import Configurable, lookup

__all__ = [
    "REDISTRIBUTIONS",
    "RULES",
    "Exploration",
    "Gradient",
    "LayerUpdate",
    "Magnitude",
    "MeanScoreRedistribution",
    "Momentum",
    "Random",
    "Rule",
    "Sum",
    "get_redistribution",
    "get_rule",
]


class LayerUpdate:
    """What a rule sees of one prunable weight during a mask update.

    Attributes:
        weight: the weight's `SparseParameter` (`.read()`, `.mask`,
            `.state(name)`).
        index: its position in `model.masked_weights` (keys the RNG).
        mask: the mask before this update (float tensor).
        gradient: the stored dense gradient `dL/d(W*M)` (its momentum when a
            rule has `momentum > 0`); `None` when no rule reads it.
        step: global step of the update (int64 tensor).
        round: `t`, update rounds so far including this one (float64 tensor).
        seed: RNG seed of this role (the callback's `seed` for growth,
            `-(seed + 1)` for dropping, so the two draws differ).

    Args:
        weight, index, mask, gradient, step, round, seed: see Attributes.

    Example:

    ```python
    class Saliency(Rule):      # a rule reads what it needs from the update
        needs_gradient = True
        def score(self, update):
            return tf.abs(update.gradient * update.weight.read())
    ```
    """

    def __init__(self, weight, index, mask, gradient, step, round, seed):
        self.weight, self.index, self.mask = weight, index, mask
        self.gradient, self.step, self.round, self.seed = gradient, step, round, seed
        # Set by a round on indices: the flat positions active before it, and
        # the static bound on their count (for `inplace.set_entries`; reads
        # at positions, `score_at`, are compiled up to that many).
        self.active, self.capacity = None, None


class Rule(Configurable):
    """Base class of drop and grow scores.

    Subclasses implement `score(update) -> tensor` (the weight's shape; any
    finite values) and may create per-weight state in `build(model)` (with
    `layer.add_mask_state`; called under the strategy scope) and advance it
    in `update_state(update, new_mask)` after the mask changed.

    Example:

    ```python
    class Saliency(Rule):            # grow by |w * g| (inactive w are 0)
        needs_gradient = True
        def score(self, update):
            return tf.abs(update.gradient * update.weight.read())
    ```
    """

    # Reads the dense gradient of the update step.
    needs_gradient = False
    # Whether a pass compiled by XLA may compute `score` (elementwise math on
    # the update's tensors; `score_at` then reads only the given positions):
    # "exact" when XLA gives the same bits as TensorFlow (`abs`), "close"
    # when only within rounding (`sqrt`, division: XLA's differ in the last
    # bits, so the caller re-scores what it selects), None when not at all
    # (XLA's random numbers are slow on CPU).
    fusion = None
    # > 0: reads the momentum `b * buffer + g` of the dense gradient instead.
    momentum = 0.0

    def build(self, model):
        pass

    def score(self, update):
        raise NotImplementedError

    def score_at(self, update, positions):
        """The score at flat `positions` (int64) only; by default all of
        `score`, then gathered. Rules that can read fewer override it."""
        return inplace.get_entries(tf.cast(self.score(update), tf.float32), positions,
                                   update.capacity)

    def update_state(self, update, new_mask):
        pass

    def parts(self):
        return [self]

    def __add__(self, other):
        return Sum([self, other])


@keras.saving.register_keras_serializable(package="keras_sparse")
class Magnitude(Rule):
    """Score `abs(w)`: the drop rule of SET, RigL, SNFS and DST-EE.

    Example:

    ```python
    ks.callbacks.DynamicSparsity(drop=Magnitude(), grow="gradient")
    ```
    """

    fusion = "exact"

    def score(self, update):
        return tf.abs(update.weight.read())

    def score_at(self, update, positions):
        return tf.abs(inplace.get_entries(update.weight.read(), positions, update.capacity))


@keras.saving.register_keras_serializable(package="keras_sparse")
class Random(Rule):
    """Uniform random score from a stateless RNG keyed by (seed, step, layer).

    SET's grow rule; every replica and a resumed run draw the same numbers.

    Example:

    ```python
    ks.callbacks.DynamicSparsity(drop="magnitude", grow=Random())
    ```
    """

    def score(self, update):
        return stateless_uniform(update.weight.variable.shape, update.seed,
                                 update.step, update.index)


@keras.saving.register_keras_serializable(package="keras_sparse")
class Gradient(Rule):
    """Score `abs(dL/d(W*M))` of the update step's batch: RigL's grow rule.

    The gradient comes from the update step's own backward pass (no extra
    pass) and is all-reduced across replicas, so every replica grows the
    same connections.

    Example:

    ```python
    ks.callbacks.DynamicSparsity(drop="magnitude", grow=Gradient())
    ```
    """

    needs_gradient = True
    fusion = "exact"

    def score(self, update):
        return tf.abs(update.gradient)

    def score_at(self, update, positions):
        return tf.abs(inplace.get_entries(update.gradient, positions, update.capacity))


@keras.saving.register_keras_serializable(package="keras_sparse")
class Momentum(Rule):
    """Score `abs(m)`, `m <- momentum * m + dL/d(W*M)` every step: SNFS.

    Args:
        momentum: decay of the gradient momentum, in (0, 1); 0.9 as the SGD
            momentum of the SNFS paper.

    Raises:
        TypeError, ValueError: `momentum` is not a number in (0, 1).

    Example:

    ```python
    ks.callbacks.DynamicSparsity(grow=Momentum(0.9), redistribution="mean_score")
    ```
    """

    def __init__(self, momentum=0.9):
        self.momentum = check_number(momentum, "momentum", 0, 1, low_open=True,
                                     high_open=True)

    def score(self, update):
        return tf.abs(update.gradient)

    def get_config(self):
        return {"momentum": self.momentum}


@keras.saving.register_keras_serializable(package="keras_sparse")
class Exploration(Rule):
    """DST-EE's exploration bonus `c_t * sqrt(ln(t) / (N_i + eps))`.

    `N_i` counts the update rounds in which weight `i` was active (a
    per-weight variable `<weight>_dstee_count` on the model, saved with it);
    `t` is the number of update rounds so far. Add it to a score:
    `Gradient() + Exploration(c)` is DST-EE's acquisition function.

    interpretation (UCB1-style): at round `t` (1, 2, ...) the current mask
    counts first (`N_i += M_i`), then the bonus is computed, so round 1 has
    no bonus (`ln 1 = 0`); `c_t = c * c_decay ** ((t - 1) // c_decay_every)`.

    Every position never active has `N_i = 0` and so the same bonus: among
    those the ranking stays `abs(g)`; the bonus mostly demotes positions
    active for many rounds (recently dropped ones).

    `eps`: with the default 1.0 the bonus of a never-active position is
    `c * sqrt(ln t)`, small beside `abs(g)` for small `c`. With a small
    constant (e.g. `eps=1e-8`), as the acquisition function reads with a
    count of zero in its denominator, every never-active position outranks
    every position that was active before, and among them `abs(g)` decides.
    interpretation: the paper's full text (Huang et al. 2023, arXiv
    2211.16667) was not readable here (only its abstract pages were found),
    so its definition of `N_i` and of the constant could not be checked;
    both forms are offered and the studies run both. With `t="steps"` the
    logarithm reads the training step instead of the round (larger, and
    nonzero from the first update). With `c_scale="relative"` the bonus is
    `c * mean(abs(g)) * sqrt(...)`, `mean(abs(g))` over all positions of the
    layer, so `c` does not depend on the scale of the loss or the layer.

    Args:
        c: weight of the bonus, >= 0 (1e-2, the top of the paper's sweep
            1e-5 to 1e-2: smaller values barely change RigL's masks on a
            LeNet-300-100; see `ks.callbacks.DSTEE`).
        eps: added to `N_i`, > 0 (1.0; `1e-8` for the small-constant form).
        c_decay: factor applied to `c` every `c_decay_every` rounds, > 0.
        c_decay_every: rounds between decays, an int >= 1, or `None` (never).
        t: what `t` in `ln(t)` counts: "rounds" (update rounds, the paper's
            reading here and the default) or "steps" (training steps).
        c_scale: "absolute" (the paper's form, default) or "relative" (`c`
            times the layer's mean `abs(g)`).

    Raises:
        TypeError, ValueError: a bad `c`, `eps`, `c_decay`, `c_decay_every`,
            `t` or `c_scale`, naming it.

    Example:

    ```python
    grow = Gradient() + Exploration(c=1e-3, c_decay=0.5, c_decay_every=10)
    ks.callbacks.DynamicSparsity(grow=grow)
    ```
    """

    COUNT = "dstee_count"
    T_CHOICES = ("rounds", "steps")
    SCALES = ("absolute", "relative")

    def __init__(self, c=1e-2, eps=1.0, c_decay=1.0, c_decay_every=None, t="rounds",
                 c_scale="absolute"):
        self.c = check_number(c, "c", low=0)
        self.eps = check_number(eps, "eps", low=0, low_open=True)
        self.c_decay = check_number(c_decay, "c_decay", low=0, low_open=True)
        if c_decay_every is not None:
            c_decay_every = check_int(c_decay_every, "c_decay_every", minimum=1,
                                      allowed=" or None")
        self.c_decay_every = c_decay_every
        self.t = check_choice(t, "t", self.T_CHOICES)
        self.c_scale = check_choice(c_scale, "c_scale", self.SCALES)

    @property
    def needs_gradient(self):
        return self.c_scale == "relative"

    def build(self, model):
        for layer in {id(mw.layer): mw.layer for mw in model.masked_weights}.values():
            layer.add_mask_state(self.COUNT)

    def coefficient(self, t):
        """`c_t` at round `t` (a float64 tensor)."""
        if self.c_decay_every is None:
            return tf.constant(self.c, tf.float64)
        decays = tf.math.floordiv(t - 1.0, float(self.c_decay_every))
        return self.c * tf.pow(tf.constant(self.c_decay, tf.float64), decays)

    fusion = "close"

    def score(self, update):
        counts = tf.convert_to_tensor(update.weight.state(self.COUNT)) + update.mask
        return self._bonus(update, counts)

    def score_at(self, update, positions):
        def at(tensor):
            return inplace.get_entries(tensor, positions, update.capacity)

        return self._bonus(update, at(update.weight.state(self.COUNT)) + at(update.mask))

    def _bonus(self, update, counts):
        c_t = tf.cast(self.coefficient(update.round), tf.float32)
        t = update.round if self.t == "rounds" else tf.cast(update.step, tf.float64)
        log_t = tf.cast(tf.math.log(tf.maximum(t, 1.0)), tf.float32)
        if self.c_scale == "relative":
            c_t = c_t * tf.reduce_mean(tf.abs(tf.cast(update.gradient, tf.float32)))
        return c_t * tf.sqrt(log_t / (counts + self.eps))

    def update_state(self, update, new_mask):
        counter = update.weight.state(self.COUNT)
        if update.active is None:
            counter.assign(tf.convert_to_tensor(counter) + update.mask)
        else:  # the same sum (the mask is 0 or 1), in place at the active positions
            inplace.set_entries([(counter, [(update.active, 1.0, "add")])], update.capacity)

    def get_config(self):
        return {"c": self.c, "eps": self.eps, "c_decay": self.c_decay,
                "c_decay_every": self.c_decay_every, "t": self.t, "c_scale": self.c_scale}


@keras.saving.register_keras_serializable(package="keras_sparse")
class Sum(Rule):
    """The sum of several rules' scores (what `rule_a + rule_b` builds).

    Args:
        rules: a list of rules (instances, names in `RULES` or configs).

    Raises:
        ValueError: an unknown rule name.
        TypeError: an entry that is neither a name, a config nor a `Rule`.

    Example:

    ```python
    Sum([Gradient(), Exploration(c=1e-4)])   # == Gradient() + Exploration(1e-4)
    ```
    """

    def __init__(self, rules):
        self.rules = [part for rule in rules for part in get_rule(rule, "rules").parts()]

    @property
    def needs_gradient(self):
        return any(rule.needs_gradient for rule in self.rules)

    @property
    def momentum(self):
        return max(rule.momentum for rule in self.rules)

    @property
    def fusion(self):
        kinds = {rule.fusion for rule in self.rules}
        return None if None in kinds else ("close" if "close" in kinds else "exact")

    def parts(self):
        return list(self.rules)

    def build(self, model):
        for rule in self.rules:
            rule.build(model)

    def score(self, update):
        return tf.add_n([tf.cast(rule.score(update), tf.float32) for rule in self.rules])

    def score_at(self, update, positions):
        return tf.add_n([tf.cast(rule.score_at(update, positions), tf.float32)
                         for rule in self.rules])

    def update_state(self, update, new_mask):
        for rule in self.rules:
            rule.update_state(update, new_mask)

    def get_config(self):
        return {"rules": [keras.saving.serialize_keras_object(r) for r in self.rules]}


@keras.saving.register_keras_serializable(package="keras_sparse")
class MeanScoreRedistribution(Configurable):
    """Regrowth shared across layers by the mean grow score of active weights.

    With `grow=Momentum()` this is SNFS's momentum redistribution: layer `l`
    regrows about `D * m_l / sum(m)` connections, `D` the total dropped and
    `m_l` the mean `abs(momentum)` over its active weights; no layer grows
    more than its free positions, and the totals sum exactly to `D`, so the
    global sparsity is unchanged while per-layer sparsities move.

    interpretation: integer shares are `floor` of the proportional quota,
    capped, repeated on the remainder among layers with room; when every
    quota is below one, one connection goes to the largest quota (lowest
    layer index on ties). Layers all at zero share equally.

    Example:

    ```python
    ks.callbacks.DynamicSparsity(grow=Momentum(), redistribution="mean_score")
    ```
    """

    def layer_weight(self, update, grow_score):
        """`m_l`: mean grow score over the layer's active weights."""
        active = tf.reduce_sum(update.mask)
        total = tf.reduce_sum(tf.cast(grow_score, tf.float32) * update.mask)
        return tf.cast(total / tf.maximum(active, 1.0), tf.float64)

    def allocate(self, total, weights, capacity):
        """Integer regrowth per layer (int64 [L]) summing to `total`.

        Args:
            total: connections to regrow (int64 scalar), `<= sum(capacity)`.
            weights: layer weights `m_l` (float64 [L], >= 0).
            capacity: free positions per layer after the drop (int64 [L]).
        """
        size = tf.shape(weights)[0]

        def grow_more(alloc):
            remaining = tf.cast(total - tf.reduce_sum(alloc), tf.float64)
            room = alloc < capacity
            shares = tf.where(room, weights, 0.0)
            shares = tf.where(tf.reduce_sum(shares) > 0.0, shares, tf.cast(room, tf.float64))
            quota = remaining * shares / tf.reduce_sum(shares)
            add = tf.minimum(tf.cast(tf.floor(quota), tf.int64), capacity - alloc)
            best = tf.argmax(tf.where(room, quota, -1.0), output_type=tf.int32)
            one = tf.one_hot(best, size, dtype=tf.int64)
            return (alloc + tf.where(tf.reduce_sum(add) > 0, add, one),)

        start = tf.zeros_like(capacity)
        (alloc,) = tf.while_loop(lambda a: tf.reduce_sum(a) < total, grow_more, (start,))
        return alloc


RULES = {"magnitude": Magnitude, "random": Random, "gradient": Gradient, "momentum": Momentum}
REDISTRIBUTIONS = {"mean_score": MeanScoreRedistribution}


def get_rule(rule, argument="rule"):
    """A `Rule` from a name in `RULES`, an instance or a serialized config.

    Args:
        rule: a name, a `Rule` or a config from `serialize_keras_object`.
        argument: the argument's name, for messages.

    Raises:
        ValueError: an unknown name.
        TypeError: neither a name, a config nor a `Rule`.

    Example:

    >>> type(get_rule("gradient")).__name__
    'Gradient'
    """
    return lookup(rule, argument, RULES, Rule)


def get_redistribution(redistribution):
    """The redistribution of regrowth across layers, or None.

    Args:
        redistribution: `None`, a name in `REDISTRIBUTIONS`, a config, or an
            object with `layer_weight(update, grow_score)` and
            `allocate(total, weights, capacity)` like `MeanScoreRedistribution`.

    Raises:
        ValueError: an unknown name.
        TypeError: any other kind of value.

    Example:

    >>> type(get_redistribution("mean_score")).__name__
    'MeanScoreRedistribution'
    """
    if redistribution is None or hasattr(redistribution, "allocate"):
        return redistribution
    return lookup(redistribution, "redistribution", REDISTRIBUTIONS, MeanScoreRedistribution)
