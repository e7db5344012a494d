"""Google's OAuth 2 token information endpoint: who an access token belongs to.

    GET {fake}/oauth2/tokeninfo?access_token=TOKEN      (Google: https://oauth2.googleapis.com/tokeninfo)

answers for a token registered in fake.principals (fake.add_principal) with the fields Google returns for an
access token (https://developers.google.com/identity/protocols/oauth2, "tokeninfo"; values are strings, as
Google sends them): azp, aud, scope, exp, expires_in, email, email_verified, access_type. An unknown token gets
400 {"error": "invalid_token", "error_description": "Invalid Value"}, Google's answer, not the usual error shape.
The discovery document oauth2.v2 describes the older POST /oauth2/v2/tokeninfo; that path is served too.
"""

from __future__ import annotations

import hashlib
import time

from tests.standins.fakegcp.api import Api, Response, handles
from tests.standins.fakegcp.discovery import Method

CLIENT_ID = "32555940559.apps.googleusercontent.com"  # an installed-app OAuth client id (the Cloud SDK's)
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
LIFETIME = 3599


class OAuth2(Api):
    name = "oauth2"
    document = "oauth2.v2"

    def __init__(self, fake):
        super().__init__(fake)
        spec = {"httpMethod": "GET", "path": "tokeninfo", "parameters": self.doc.method("oauth2.tokeninfo").parameters}
        extra = [Method(self.doc, "oauth2.tokeninfo", spec), Method(self.doc, "oauth2.tokeninfo",
                                                                    dict(spec, httpMethod="POST"))]
        self.routes = sorted(self.routes + extra, key=lambda m: m.specificity)

    @handles("oauth2.tokeninfo")
    def tokeninfo(self, req):
        token = req.get("access_token")
        member = self.fake.principals.get(token) if token else None
        if member is None:
            return Response(400, {"error": "invalid_token", "error_description": "Invalid Value"})
        kind, _colon, email = member.partition(":")
        body = {"azp": CLIENT_ID, "aud": CLIENT_ID, "scope": SCOPE, "exp": str(int(time.time()) + LIFETIME),
                "expires_in": str(LIFETIME), "access_type": "online"}
        if kind == "serviceAccount":  # a service account's token names its unique id as client and audience
            account = self.fake.apis["iam"].find_account(email) if "iam" in self.fake.apis else None
            body["azp"] = body["aud"] = account["uniqueId"] if account else \
                str(int(hashlib.sha256(email.encode()).hexdigest(), 16))[:21]
            body.pop("access_type")
        if kind in ("user", "serviceAccount"):
            body.update(email=email, email_verified="true")
        return body
