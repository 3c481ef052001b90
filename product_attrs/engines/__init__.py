"""Scale-out engines: the same extraction and training on a Ray cluster (``PRODUCT_ATTRS_RAY_ADDRESS``)."""
