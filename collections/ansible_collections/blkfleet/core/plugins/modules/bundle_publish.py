#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: bundle_publish
short_description: Publish a replay bundle once, where every target pulls it from, on the controller
version_added: 0.1.0
description:
  - Puts a replay bundle under its id, C(<bundle_id>.tar), with C(<bundle_id>.tar.sha256) (the file's SHA-256 in
    C(sha256sum)'s format) beside it, into a directory a web server serves or, by HTTP PUT, under a base URL (a
    WebDAV server such as nginx with C(dav_methods PUT), an object store). Any other URL (a presigned S3 PUT URL)
    gets the bundle alone.
  - Then M(blkfleet.core.replay_bundle) with O(blkfleet.core.replay_bundle#module:url) has every target download
    it. The controller sends the bundle once, whatever the number of targets.
  - Runs C(blkfleet bundle publish) on the controller (an action plugin; the task's host is not contacted). The
    bundle is verified first; nothing changes when the same bytes are there already (RV(ignore:changed=false)).
author:
  - blkfleet developers (@blkfleet)
options:
  src:
    description:
      - The bundle file on the controller (M(blkfleet.core.btrecord)'s RV(blkfleet.core.btrecord#module:bundle)).
    type: path
    required: true
  to:
    description:
      - A directory on the controller that a web server serves (created if missing; root's only), or an C(http://)
        or C(https://) URL. A URL whose path ends in C(/) is a base the two files are PUT under.
      - Results give URLs without their user, query and fragment (a presigned URL's signature).
    type: str
    required: true
  url:
    description:
      - The base URL the targets pull from when O(to) is a directory (the URL at which the web server serves it),
        for RV(url). When O(to) is a base URL, RV(url) is under it.
    type: str
  timeout:
    description:
      - Seconds for the connection and each read of a PUT.
    type: float
    default: 60
  retries:
    description:
      - Further attempts of a PUT after a failure that may pass (no connection, a cut, HTTP 408, 429, 5xx).
    type: int
    default: 3
  retry_delay:
    description:
      - Seconds between two attempts.
    type: float
    default: 2
  ca_file:
    description:
      - CA certificates (PEM) on the controller for an https server, instead of the system's.
    type: path
extends_documentation_fragment:
  - blkfleet.core._attributes
  - blkfleet.core._attributes.ACTIONGROUP_BLKFLEET
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details:
      - Verifies the bundle and tells whether it would be published; writes and sends nothing. A URL that is not a
        base cannot be asked, so it always reports a change.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
    details:
      - Runs on the controller.
notes:
  - Use the fully qualified name C(blkfleet.core.bundle_publish); the module has no code of its own.
  - Run it once (C(run_once)), not once per target.
  - The PUT uses the engine's client (the Python standard library's C(urllib)), which takes the controller's proxy
    settings (E(https_proxy), E(no_proxy)).
seealso:
  - module: blkfleet.core.replay_bundle
  - module: blkfleet.core.btrecord
'''

EXAMPLES = r'''
- name: Publish into the directory nginx serves as http://web1/bundles/
  blkfleet.core.bundle_publish:
    src: results/bundles/db1.bundle
    to: /srv/www/bundles
    url: http://web1/bundles/
  run_once: true
  register: published

- name: Every target pulls it
  blkfleet.core.replay_bundle:
    url: "{{ published.url }}"
    checksum: "{{ published.sha256 }}"

- name: Publish by PUT under a base URL (WebDAV, object store)
  blkfleet.core.bundle_publish:
    src: results/bundles/db1.bundle
    to: https://store.example.com/blkfleet/bundles/
  run_once: true
'''

RETURN = r'''
bundle_id:
  description: Id of the bundle (SHA-256 of its manifest's content).
  returned: success
  type: str
  sample: 3b9c1c0e5f0e4d7a9c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d
sha256:
  description: SHA-256 of the bundle file (for O(blkfleet.core.replay_bundle#module:checksum)).
  returned: success
  type: str
  sample: 0d6f4b6b2f4e8f1c2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091
size:
  description: Bytes of the bundle file.
  returned: success
  type: int
  sample: 268700160
name:
  description: The published file's name, C(<bundle_id>.tar).
  returned: success
  type: str
  sample: 3b9c1c0e5f0e4d7a9c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d.tar
bundle:
  description: Path or URL (without query) of the published bundle.
  returned: success
  type: str
  sample: /srv/www/bundles/3b9c1c0e5f0e4d7a9c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d.tar
checksum_file:
  description: Path or URL of C(<bundle_id>.tar.sha256); null for a URL that names the bundle itself.
  returned: success
  type: str
  sample: /srv/www/bundles/3b9c1c0e5f0e4d7a9c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d.tar.sha256
url:
  description:
    - The URL the targets pull the bundle from (O(url) or a base O(to), with RV(name)), for
      O(blkfleet.core.replay_bundle#module:url); with O(to) a base URL, its query is kept. Null when not known.
  returned: success
  type: str
  sample: http://web1/bundles/3b9c1c0e5f0e4d7a9c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d.tar
attempts:
  description: PUT attempts of the bundle (0 when nothing was sent).
  returned: success
  type: int
  sample: 1
'''
