"""The KEMI glue Kamailio runs (kemi/entry.py), one module per purpose."""
