"""An example third-party provider: "echo" calls ``GET {url}/echo`` with a bearer token.

It uses only the public provider interface (``oneie_operator.providers``) and the client the
operator hands it, already bound to this provider, the connection's URL and its credentials,
exactly like the built-in providers.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field, field_validator

from oneie_operator.providers import CheckResult, Provider, ProviderClient, ProviderSettings, validate_base_url


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
        self, settings: EchoSettings, credentials: Mapping[str, str], http: ProviderClient
    ) -> CheckResult:
        self.check_credentials(credentials)
        answer = await http.request(
            "GET",
            "/echo",
            call="test_credentials",
            params={"say": settings.greeting},
            headers={"Authorization": f"Bearer {credentials['token']}"},
        )
        return CheckResult(answer.seconds, f"echo said {answer.body.get('said')!r}")

    async def probe(self, settings: EchoSettings, credentials: Mapping[str, str], http: ProviderClient) -> CheckResult:
        return await self.test_credentials(settings, credentials, http)
