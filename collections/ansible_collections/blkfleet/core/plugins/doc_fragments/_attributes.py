# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This doc fragment is private to the collection: it may change without notice.

from __future__ import annotations


class ModuleDocFragment:

    # Standard documentation fragment
    DOCUMENTATION = r'''
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
'''

    # Should be used together with the standard fragment
    INFO_MODULE = r'''
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
'''

    ACTIONGROUP_BLKFLEET = r'''
options: {}
attributes:
  action_group:
    description: Use C(group/blkfleet.core.blkfleet) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - blkfleet.core.blkfleet
'''

    PLATFORM_LINUX = r'''
options: {}
attributes:
  platform:
    support: full
    platforms: linux
'''
