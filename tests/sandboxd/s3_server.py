#!/usr/bin/env python3
"""A local S3 for sandboxd's artifact tests: moto's server (PyPI moto[server])
with authentication on, on 127.0.0.1 and a port of the kernel's choosing.

    s3_server.py BUCKET

Makes an IAM user allowed s3:*, an access key for it and BUCKET, then prints
"port N AKID SECRET" on stdout and serves until killed. Requests are signed
and checked (SigV4): an unknown key or a wrong secret is refused as AWS does.
"""
import json
import os
import sys
import time

# the first requests (the IAM set-up below) go unsigned; all later ones are checked
os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "4"

import boto3  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
port = server.get_host_and_port()[1]
endpoint = "http://127.0.0.1:%d" % port
anon = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup",
            aws_secret_access_key="setup")
iam = boto3.client("iam", **anon)
iam.create_user(UserName="artifacts")
policy = iam.create_policy(PolicyName="s3-all", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
iam.attach_user_policy(UserName="artifacts", PolicyArn=policy["Policy"]["Arn"])
key = iam.create_access_key(UserName="artifacts")["AccessKey"]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id=key["AccessKeyId"],
                  aws_secret_access_key=key["SecretAccessKey"])
s3.create_bucket(Bucket=sys.argv[1])
print("port %d %s %s" % (port, key["AccessKeyId"], key["SecretAccessKey"]), flush=True)
while True:
    time.sleep(3600)
