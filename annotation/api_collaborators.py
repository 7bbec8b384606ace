"""The collaborators API: GET /api/studies/<slug>/collaborators/ (anyone who may view the study), and for
the owner (and staff): POST to add one, PATCH …/<username>/ to change their role, DELETE …/<username>/ to
remove them. Errors in the one shape {"message", "extra"}."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.response import Response

from .access import get_study_for_user
from .api_ratings import ERROR
from .models import Collaborator
from .services.collaborators import collaborator_add, collaborator_remove, collaborator_role_set


class CollaboratorSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.get_username", read_only=True)

    class Meta:
        model = Collaborator
        fields = ["username", "role", "added_at"]
        read_only_fields = fields


class CollaboratorCreateSerializer(serializers.Serializer):
    username = serializers.CharField(help_text="The researcher's username (they need an account).")
    role = serializers.ChoiceField(choices=Collaborator.Role.choices, help_text="viewer or editor.")


class CollaboratorRoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Collaborator.Role.choices, help_text="viewer or editor.")


ERRORS = {
    400: OpenApiResponse(ERROR, description="Bad input: an unknown role or user, or the owner themself."),
    401: OpenApiResponse(ERROR, description="Not signed in."),
    403: OpenApiResponse(ERROR, description="The study is visible to you but this needs the owner."),
    404: OpenApiResponse(ERROR, description="No such study (or not visible to you), or no such collaborator."),
}


class CollaboratorViewSet(viewsets.GenericViewSet):
    """A study's collaborators and their roles."""

    serializer_class = CollaboratorSerializer
    pagination_class = None
    lookup_field = "username"
    lookup_value_regex = r"[^/]+"
    # The access level on the study each action needs (the permission-matrix test reads it).
    study_access = {"list": "view", "create": "own", "partial_update": "own", "destroy": "own"}

    def _study(self):
        return get_study_for_user(self.request.user, self.kwargs["slug"], self.study_access[self.action])

    def get_queryset(self):
        return Collaborator.objects.none()  # for the schema; every action asks _study()

    @extend_schema(responses={200: CollaboratorSerializer(many=True), **ERRORS})
    def list(self, request, slug=None):
        study = self._study()
        rows = study.collaborator_roles.select_related("user").order_by("added_at", "id")
        return Response(CollaboratorSerializer(rows, many=True).data)

    @extend_schema(
        request=CollaboratorCreateSerializer,
        responses={201: CollaboratorSerializer, 409: OpenApiResponse(ERROR, description="Already added."), **ERRORS},
    )
    def create(self, request, slug=None):
        study = self._study()
        payload = CollaboratorCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        collaborator = collaborator_add(study=study, **payload.validated_data)
        return Response(CollaboratorSerializer(collaborator).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=CollaboratorRoleSerializer, responses={200: CollaboratorSerializer, **ERRORS})
    def partial_update(self, request, slug=None, username=None):
        study = self._study()
        payload = CollaboratorRoleSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        collaborator = collaborator_role_set(study=study, username=username, role=payload.validated_data["role"])
        return Response(CollaboratorSerializer(collaborator).data)

    @extend_schema(responses={204: None, **ERRORS})
    def destroy(self, request, slug=None, username=None):
        collaborator_remove(study=self._study(), username=username)
        return Response(status=status.HTTP_204_NO_CONTENT)
