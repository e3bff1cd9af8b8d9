import numpy as np
import tensorflow as tf

from models.augmentation import Distortions, distort_image


def _gradient_image(size=32):
    """Left-to-right ramp in red, top-to-bottom ramp in green: any flip or crop shows."""
    ramp = np.linspace(0.1, 0.9, size, dtype=np.float32)
    image = np.zeros((size, size, 3), np.float32)
    image[..., 0] = ramp[np.newaxis, :]
    image[..., 1] = ramp[:, np.newaxis]
    image[..., 2] = 0.5
    return tf.constant(image)


def test_no_distortion_returns_the_image():
    image = _gradient_image()
    assert not Distortions().enabled
    np.testing.assert_allclose(distort_image(image, Distortions()).numpy(), image.numpy())


def test_flip_mirrors_about_half_the_images():
    tf.random.set_seed(1)
    image = _gradient_image()
    flipped = 0
    for _ in range(40):
        out = distort_image(image, Distortions(flip_left_right=True)).numpy()
        if np.allclose(out, image.numpy()[:, ::-1]):
            flipped += 1
        else:
            np.testing.assert_allclose(out, image.numpy())
    assert 10 <= flipped <= 30


def test_crop_and_scale_keep_the_shape_and_zoom_in():
    tf.random.set_seed(2)
    image = _gradient_image()
    out = distort_image(image, Distortions(random_crop=20, random_scale=30)).numpy()
    assert out.shape == (32, 32, 3)
    # Zoomed in: the red ramp now spans a narrower range than the whole image's.
    red_span = out[..., 0].max() - out[..., 0].min()
    assert red_span < 0.8 * (image.numpy()[..., 0].max() - image.numpy()[..., 0].min())


def test_brightness_multiplies_within_the_percentage():
    tf.random.set_seed(3)
    image = tf.fill([8, 8, 3], 0.5)
    values = [float(distort_image(image, Distortions(random_brightness=10))[0, 0, 0])
              for _ in range(30)]
    assert min(values) >= 0.45 - 1e-6 and max(values) <= 0.55 + 1e-6
    assert max(values) - min(values) > 0.02  # it does vary
