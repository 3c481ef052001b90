"""Hostile input, one case per fault: each case runs the real code; the README table is made from them."""
