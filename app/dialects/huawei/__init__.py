"""Huawei Cloud FRS face sets (`/v2/{project_id}/face-sets/...`): a door onto the core."""
