"""The one naming rule in models/features.py: a photo's subject."""

from models import features


def test_the_subject_is_the_base_name_up_to_nohash():
    assert features.subject_of("roses/123_abc_n.jpg") == "123_abc_n.jpg"
    assert features.subject_of("roses/123_abc_n_nohash_x3.jpg") == "123_abc_n"
    assert features.subject_of("a/b/cat_nohash_1_nohash_2.png") == "cat"
