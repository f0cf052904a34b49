"""Offline dataset builders: real data that ships inside packages, built once into a data dir."""
