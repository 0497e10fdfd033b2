#!/usr/bin/env bash
echo "cli tests: to be written"; exit 0
