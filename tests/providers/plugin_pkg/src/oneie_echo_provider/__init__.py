"""An example third-party provider: "echo" calls ``GET {url}/echo`` with a bearer token.

It uses only the public provider interface (``oneie_operator.providers.base``) and the HTTP helper
the operator hands it, exactly like the built-in providers.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field, field_validator

from oneie_operator.providers.base import CheckResult, Provider, ProviderSettings, validate_base_url
from oneie_operator.providers.http import ProviderHTTP


class EchoSettings(ProviderSettings):
    url: str = Field(description="the echo service URL, like https://echo.example.com")
    greeting: str = Field(default="hello", description="what the echo service should say back")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return validate_base_url(value, example="https://echo.example.com")


class EchoProvider(Provider[EchoSettings]):
    name = "echo"
    display_name = "Echo"
    settings_model = EchoSettings
    secret_fields = ("token",)
    capabilities = frozenset({"echo"})

    async def test_credentials(
        self, settings: EchoSettings, credentials: Mapping[str, str], http: ProviderHTTP
    ) -> CheckResult:
        self.check_credentials(credentials)
        answer = await http.request(
            "GET",
            f"{settings.url}/echo",
            call="test_credentials",
            params={"say": settings.greeting},
            headers={"Authorization": f"Bearer {credentials['token']}"},
            url_field="spec.echo.url",
            provider=self.name,
            display_name=self.display_name,
        )
        return CheckResult(answer.seconds, f"echo said {answer.body.get('said')!r}")

    async def probe(self, settings: EchoSettings, credentials: Mapping[str, str], http: ProviderHTTP) -> CheckResult:
        return await self.test_credentials(settings, credentials, http)
