"""Per-image augmentation and normalization ops for `tf.data` pipelines.

Random ops are stateless and take a `[2]` integer seed, so a pipeline built
with the same seed yields the same images on every run and every worker.
Images are in pixel units (0-255) until `normalize`.
"""

import tensorflow as tf


def normalize(image, mean, std):
    """Maps pixel values to `(image / 255 - mean) / std`, as float32.

    Args:
        image: a `[H, W, C]` image in pixel units (uint8 or float).
        mean: per-channel mean of the data set on the [0, 1] scale.
        std: per-channel standard deviation on the [0, 1] scale.

    Example:
        >>> x = normalize(tf.fill([2, 2, 1], 255), mean=(0.5,), std=(0.5,))
        >>> float(x[0, 0, 0])
        1.0
    """
    image = tf.cast(image, tf.float32) / 255.0
    return (image - tf.constant(mean)) / tf.constant(std)


def pad_crop(image, seed, padding=2):
    """Random shift: zero-pad `padding` pixels, then crop back at random.

    Args:
        image: a `[H, W, C]` image with a static shape.
        seed: a `[2]` int32/int64 seed.
        padding: pixels of zero padding on each side (the largest shift).

    Example:
        >>> x = pad_crop(tf.zeros([28, 28, 1], tf.uint8), seed=[0, 1])
        >>> x.shape
        TensorShape([28, 28, 1])
    """
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    return tf.image.stateless_random_crop(padded, image.shape, seed)


def pad_crop_flip(image, seed, padding=4):
    """CIFAR augmentation: zero-pad, random crop back, random horizontal flip.

    Args:
        image: a `[H, W, C]` image with a static shape.
        seed: a `[2]` int32/int64 seed.
        padding: pixels of zero padding on each side before cropping.

    Example:
        >>> x = pad_crop_flip(tf.zeros([32, 32, 3], tf.uint8), seed=[0, 1])
        >>> x.shape
        TensorShape([32, 32, 3])
    """
    crop_seed, flip_seed = tf.unstack(tf.random.split(seed, 2))
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    image = tf.image.stateless_random_crop(padded, image.shape, crop_seed)
    return tf.image.stateless_random_flip_left_right(image, flip_seed)


def random_resized_crop_flip(
    image, seed, size=224, area_range=(0.08, 1.0), ratio_range=(3 / 4, 4 / 3)
):
    """ImageNet training augmentation ("Inception crop") plus random flip.

    Crops a random box covering `area_range` of the image with aspect ratio
    in `ratio_range` (the whole image when 10 tries fail), resizes it to
    `size` x `size` and flips it horizontally half of the time.

    Args:
        image: a `[H, W, C]` image of any size.
        seed: a `[2]` int32/int64 seed.
        size: output height and width.
        area_range: range of the crop area as a fraction of the image.
        ratio_range: range of the crop's width / height.

    Example:
        >>> x = random_resized_crop_flip(tf.zeros([300, 400, 3]), seed=[0, 1])
        >>> x.shape
        TensorShape([224, 224, 3])
    """
    box_seed, flip_seed = tf.unstack(tf.random.split(seed, 2))
    begin, box_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=box_seed,
        min_object_covered=0.0,
        aspect_ratio_range=ratio_range,
        area_range=area_range,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    image = tf.slice(image, begin, box_size)
    image = tf.image.resize(image, [size, size])
    return tf.image.stateless_random_flip_left_right(image, flip_seed)


def resize_center_crop(image, resize=256, size=224):
    """ImageNet evaluation: shorter side to `resize`, then a central crop.

    Args:
        image: a `[H, W, C]` image of any size.
        resize: length of the shorter side after the aspect-preserving resize.
        size: height and width of the central crop.

    Example:
        >>> x = resize_center_crop(tf.zeros([300, 400, 3]))
        >>> x.shape
        TensorShape([224, 224, 3])
    """
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = resize / tf.reduce_min(hw)
    image = tf.image.resize(image, tf.cast(tf.round(hw * scale), tf.int32))
    return tf.image.resize_with_crop_or_pad(image, size, size)
