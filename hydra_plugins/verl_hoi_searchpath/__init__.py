"""verl-hoi's Hydra search-path plugin (see ``verl_hoi_searchpath.py``)."""
