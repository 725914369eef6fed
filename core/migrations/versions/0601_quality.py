"""quality evaluations: forms and evaluations

Revision ID: 0601_quality
Revises: 0501_call_control
Create Date: 2026-12-03 04:15:00
"""
import sqlalchemy as sa
from alembic import op

import core.models


revision = '0601_quality'
down_revision = '0501_call_control'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('quality_forms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('sections', sa.JSON(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', core.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quality_forms'))
    )
    op.create_table('quality_evaluations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('form_id', sa.Integer(), nullable=False),
    sa.Column('form', sa.JSON(), nullable=False),
    sa.Column('interaction_id', sa.Integer(), nullable=True),
    sa.Column('call_id', sa.String(length=128), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.Column('queue', sa.String(length=64), nullable=False),
    sa.Column('call_at', core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('evaluator_id', sa.Integer(), nullable=False),
    sa.Column('evaluator', sa.String(length=64), nullable=False),
    sa.Column('answers', sa.JSON(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('earned', sa.Float(), nullable=False),
    sa.Column('applicable', sa.Float(), nullable=False),
    sa.Column('critical_failed', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('agent_comment', sa.Text(), nullable=True),
    sa.Column('resolution', sa.String(length=16), nullable=True),
    sa.Column('resolution_note', sa.Text(), nullable=True),
    sa.Column('resolved_by', sa.String(length=64), nullable=True),
    sa.Column('original_score', sa.Float(), nullable=True),
    sa.Column('created_at', core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', core.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['form_id'], ['quality_forms.id'], name=op.f('fk_quality_evaluations_form_id_quality_forms')),
    sa.ForeignKeyConstraint(['interaction_id'], ['interactions.id'], name=op.f('fk_quality_evaluations_interaction_id_interactions'),
                            ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quality_evaluations'))
    )
    with op.batch_alter_table('quality_evaluations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_quality_evaluations_agent_id'), ['agent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_quality_evaluations_call_at'), ['call_at'], unique=False)
        batch_op.create_index('ix_quality_evaluations_call_form_evaluator', ['interaction_id', 'form_id', 'evaluator_id'], unique=True)
        batch_op.create_index(batch_op.f('ix_quality_evaluations_status'), ['status'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('quality_evaluations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_quality_evaluations_status'))
        batch_op.drop_index('ix_quality_evaluations_call_form_evaluator')
        batch_op.drop_index(batch_op.f('ix_quality_evaluations_call_at'))
        batch_op.drop_index(batch_op.f('ix_quality_evaluations_agent_id'))

    op.drop_table('quality_evaluations')
    op.drop_table('quality_forms')
