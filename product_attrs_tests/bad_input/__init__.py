"""Hostile input, one case per fault: each case runs the real code and the README's table is made from them."""
